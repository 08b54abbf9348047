from __future__ import annotations

import httpx

from histora import __version__
from tests.conftest import FakeProvidersContainer


async def test_health_is_200_when_every_component_is_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert set(body["components"]) == {
        "database",
        "model",
        "vector_store",
        "embedder",
        "file_store",
    }
    assert all(c["status"] == "ok" for c in body["components"].values())
    assert body["components"]["database"]["provider"] in {"sqlite", "postgresql"}


async def test_health_is_503_naming_the_failing_model(
    client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    container.chat_model.healthy = False  # type: ignore[attr-defined]
    response = await client.get("/api/v1/health")
    assert response.status_code == 503
    components = response.json()["components"]
    assert components["model"]["status"] == "unavailable"
    assert components["model"]["detail"] == "fake model is down"
    assert components["database"]["status"] == "ok"


async def test_health_is_503_naming_the_failing_vector_store(
    client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    container.vector_store.healthy = False  # type: ignore[attr-defined]
    response = await client.get("/api/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["components"]["vector_store"]["status"] == "unavailable"


async def test_health_is_503_naming_the_failing_embedder(
    client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    container.embedder.healthy = False  # type: ignore[attr-defined]
    response = await client.get("/api/v1/health")
    assert response.status_code == 503
    components = response.json()["components"]
    assert components["embedder"]["status"] == "unavailable"
    assert components["model"]["status"] == "ok"
