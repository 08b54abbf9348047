from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog

from histora import log_config
from histora.api import create_api
from histora.api.body_limit import MAX_OTHER_BODY_BYTES
from tests.conftest import FakeProvidersContainer


async def test_request_id_is_generated_and_timing_reported(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/characters/categories")
    assert len(response.headers["x-request-id"]) == 32
    assert float(response.headers["x-process-time-ms"]) >= 0


async def test_request_id_from_caller_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/v1/characters/categories", headers={"X-Request-ID": "trace-123"}
    )
    assert response.headers["x-request-id"] == "trace-123"


async def test_unsafe_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/v1/characters/categories", headers={"X-Request-ID": "bad id\twith spaces"}
    )
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert len(response.headers["x-request-id"]) == 32


async def test_a_json_body_over_its_cap_is_413_with_the_request_id(
    client: httpx.AsyncClient,
) -> None:
    session = await client.post("/api/v1/chat/sessions", json={"character_id": "socrates"})
    messages = f"/api/v1/chat/sessions/{session.json()['id']}/messages"
    huge = json.dumps({"content": "x" * (MAX_OTHER_BODY_BYTES + 1)})

    async def chunked() -> AsyncIterator[bytes]:
        yield huge.encode()

    for body in (huge.encode(), chunked()):  # declared, then streamed (chunked)
        response = await client.post(
            messages, content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "request_too_large" and "1024 KB" in error["message"]
        assert error["request_id"] == response.headers["x-request-id"]
    listed = await client.get(messages)
    assert listed.json()["total"] == 0


async def test_cors_allows_configured_origin(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/api/v1/characters",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"


async def test_cors_refuses_unknown_origin(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/api/v1/characters",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_untrusted_host_is_refused(container: FakeProvidersContainer) -> None:
    settings = container.settings.model_copy(update={"trusted_hosts": ["histora.example"]})
    transport = httpx.ASGITransport(app=create_api(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://evil.example") as http:
        refused = await http.get("/api/v1/characters/categories")
    async with httpx.AsyncClient(transport=transport, base_url="http://histora.example") as http:
        allowed = await http.get("/api/v1/characters/categories")
    assert refused.status_code == 400
    assert allowed.status_code == 200


def test_the_api_served_alone_logs_as_its_settings_say(
    container: FakeProvidersContainer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Served by ``uvicorn --factory histora.api:create_api`` there is no app lifespan to
    # configure logging; the factory does, or every level is printed, unformatted.
    monkeypatch.setattr(log_config, "_configured", False)
    saved = structlog.get_config()
    try:
        settings = container.settings.model_copy(update={"log_level": "WARNING", "log_json": True})
        create_api(settings)
        log = structlog.get_logger("histora.test")
        log.info("routine", detail=1)
        log.warning("worth_seeing", detail=2)
        lines = capsys.readouterr().err.strip().splitlines()
    finally:
        structlog.configure(**saved)
    assert [json.loads(line)["event"] for line in lines] == ["worth_seeing"]
