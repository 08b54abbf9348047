from __future__ import annotations

import httpx


async def test_openapi_has_stable_operation_ids(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    operations = {
        operation["operationId"]
        for path in response.json()["paths"].values()
        for operation in path.values()
    }
    assert {
        "health-get_health",
        "characters-list_characters",
        "characters-get_character",
        "characters-list_categories",
    } <= operations


async def test_docs_page_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()
