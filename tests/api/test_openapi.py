from __future__ import annotations

import re

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


async def test_docs_page_is_served_without_any_outside_host(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/docs")
    assert response.status_code == 200
    page = response.text
    # Every script, stylesheet and icon comes from this server, so the page works offline.
    assets = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', page)
    assert assets, page
    assert all(url.startswith("/api/v1/") for url in assets), assets
    assert "url: '/api/v1/openapi.json'" in page or 'url: "/api/v1/openapi.json"' in page
    for url in assets:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    script = await client.get("/api/v1/docs/static/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in script.text


async def test_streamed_routes_document_their_200_as_server_sent_events(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get("/api/v1/openapi.json")).json()["paths"]
    for route in ("messages", "regenerate"):
        responses = paths[f"/api/v1/chat/sessions/{{session_id}}/{route}"]["post"]["responses"]
        assert list(responses["200"]["content"]) == ["text/event-stream"], route
        # Their other answers are JSON, as before.
        assert list(responses["201"]["content"]) == ["application/json"], route
        assert list(responses["409"]["content"]) == ["application/json"], route
