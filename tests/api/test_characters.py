from __future__ import annotations

import httpx
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.models import Character, CharacterStatus
from tests.factories import make_character


async def _published_count(db: AsyncSession, **filters: object) -> int:
    statement = (
        select(func.count())
        .select_from(Character)
        .where(Character.status == CharacterStatus.PUBLISHED)
    )
    for column, value in filters.items():
        statement = statement.where(getattr(Character, column) == value)
    return (await db.exec(statement)).one()


async def test_list_characters_returns_first_page(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    response = await client.get("/api/v1/characters", params={"limit": 10})
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == await _published_count(db)
    assert body["total"] >= 40
    assert len(body["items"]) == 10
    first = body["items"][0]
    assert {"id", "name", "category", "lifespan", "portrait", "traits"} <= set(first)
    assert "system_prompt" not in first


async def test_list_characters_filters_by_category(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    response = await client.get("/api/v1/characters", params={"category": "science", "limit": 100})
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == await _published_count(db, category="science")
    assert body["total"] == len(body["items"]) > 0
    assert {item["category"] for item in body["items"]} == {"science"}


async def test_list_characters_filters_featured(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/characters", params={"featured": "true", "limit": 100})
    body = response.json()
    assert 8 <= body["total"] <= 10
    assert all(item["featured"] for item in body["items"])


async def test_list_characters_searches_names(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/characters", params={"q": "curie"})
    body = response.json()
    assert [item["id"] for item in body["items"]] == ["marie-curie"]
    assert body["total"] == 1


async def test_list_characters_treats_wildcards_literally(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/characters", params={"q": "%_%"})
    assert response.status_code == 200
    assert response.json() == {"items": [], "total": 0}


async def test_list_characters_pages_without_overlap(client: httpx.AsyncClient) -> None:
    first = (await client.get("/api/v1/characters", params={"limit": 5})).json()
    second = (await client.get("/api/v1/characters", params={"limit": 5, "offset": 5})).json()
    first_ids = {item["id"] for item in first["items"]}
    second_ids = {item["id"] for item in second["items"]}
    assert len(first_ids) == len(second_ids) == 5
    assert not first_ids & second_ids
    assert first["total"] == second["total"]


async def test_list_characters_hides_drafts(client: httpx.AsyncClient, db: AsyncSession) -> None:
    draft = await make_character(db, name="Zzdraft Person", status=CharacterStatus.DRAFT)
    body = (await client.get("/api/v1/characters", params={"q": "zzdraft"})).json()
    assert body["total"] == 0
    response = await client.get(f"/api/v1/characters/{draft.id}")
    assert response.status_code == 404


async def test_list_characters_unknown_category_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/characters", params={"category": "astrology"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    assert "astrology" in response.json()["error"]["message"]


async def test_list_characters_limit_over_maximum_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/characters", params={"limit": 5000})
    assert response.status_code == 422
    assert "limit" in response.json()["error"]["message"]


async def test_list_characters_malformed_parameter_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/characters", params={"offset": "-3"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"][0]["location"] == ["query", "offset"]


async def test_get_character_returns_profile(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/characters/socrates")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Socrates"
    assert body["birth_year"] < 0 and body["lifespan"].endswith("BCE")
    assert body["knowledge_horizon"] == "399 BCE"
    assert len(body["starter_questions"]) == 3
    assert "system_prompt" not in body


async def test_get_character_unknown_id_is_404_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/characters/does-not-exist")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert "does-not-exist" in error["message"]
    assert error["request_id"] == response.headers["x-request-id"]


async def test_categories_count_published_characters(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    response = await client.get("/api/v1/characters/categories")
    assert response.status_code == 200
    categories = response.json()
    assert len(categories) >= 5
    assert all(category["count"] >= 1 for category in categories)
    assert sum(category["count"] for category in categories) == await _published_count(db)


async def test_unknown_api_route_is_404_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
