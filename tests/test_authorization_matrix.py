"""Every REST route, called by a stranger and by an anonymous caller, is denied
without leaking data. A new route without an entry here fails the test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.api import create_api
from histora.models import Role, User
from histora.services import api_keys as api_keys_service
from histora.services import conversations
from histora.services import documents as documents_service
from tests.conftest import FakeProvidersContainer, bearer_for
from tests.factories import make_user

PUBLIC = "public"  # anyone may call it: nothing owned is behind it
SIGNED_IN = "signed-in"  # needs an account; acts only on the caller's own data
OWNED = "owned"  # takes the id of someone's object: strangers get 404
ADMIN = "admin"  # admins only: other users get 403


@dataclass(frozen=True)
class Entry:
    kind: str
    body: dict[str, object] | None = None
    params: dict[str, str] | None = None
    upload: bool = False  # multipart with one small text file


MATRIX: dict[tuple[str, str], Entry] = {
    ("GET", "/api/v1/health"): Entry(PUBLIC),
    ("GET", "/api/v1/characters"): Entry(PUBLIC),
    ("GET", "/api/v1/characters/categories"): Entry(PUBLIC),
    ("GET", "/api/v1/characters/{character_id}"): Entry(PUBLIC),
    ("POST", "/api/v1/auth/register"): Entry(PUBLIC),
    ("POST", "/api/v1/auth/login"): Entry(PUBLIC),
    ("POST", "/api/v1/auth/refresh"): Entry(PUBLIC),
    ("POST", "/api/v1/auth/logout"): Entry(PUBLIC),
    ("POST", "/api/v1/auth/firebase"): Entry(PUBLIC),
    ("POST", "/api/v1/auth/logout-all"): Entry(SIGNED_IN),
    ("GET", "/api/v1/auth/me"): Entry(SIGNED_IN),
    ("POST", "/api/v1/api-keys"): Entry(SIGNED_IN, {"name": "k"}),
    ("GET", "/api/v1/api-keys"): Entry(SIGNED_IN),
    ("DELETE", "/api/v1/api-keys/{key_id}"): Entry(OWNED),
    ("POST", "/api/v1/chat/sessions"): Entry(SIGNED_IN, {"character_id": "socrates"}),
    ("GET", "/api/v1/chat/sessions"): Entry(SIGNED_IN),
    ("GET", "/api/v1/chat/sessions/{session_id}"): Entry(OWNED),
    ("PATCH", "/api/v1/chat/sessions/{session_id}"): Entry(OWNED, {"title": "Mine now"}),
    ("DELETE", "/api/v1/chat/sessions/{session_id}"): Entry(OWNED),
    ("GET", "/api/v1/chat/sessions/{session_id}/messages"): Entry(OWNED),
    ("POST", "/api/v1/chat/sessions/{session_id}/messages"): Entry(OWNED, {"content": "Hi"}),
    ("POST", "/api/v1/chat/sessions/{session_id}/regenerate"): Entry(OWNED),
    ("POST", "/api/v1/chat/sessions/{session_id}/documents"): Entry(OWNED, upload=True),
    ("GET", "/api/v1/chat/sessions/{session_id}/documents"): Entry(OWNED),
    ("GET", "/api/v1/chat/sessions/{session_id}/search"): Entry(OWNED, params={"q": "owl"}),
    ("GET", "/api/v1/documents/{document_id}"): Entry(OWNED),
    ("DELETE", "/api/v1/documents/{document_id}"): Entry(OWNED),
    ("POST", "/api/v1/documents/{document_id}/reindex"): Entry(OWNED),
    ("GET", "/api/v1/characters/{character_id}/search"): Entry(SIGNED_IN, params={"q": "owl"}),
    ("POST", "/api/v1/characters/{character_id}/documents"): Entry(ADMIN, upload=True),
    ("GET", "/api/v1/characters/{character_id}/documents"): Entry(ADMIN),
}


def _request_kwargs(entry: Entry) -> dict[str, Any]:
    if entry.upload:
        return {"files": {"file": ("note.txt", b"The owl of Minerva flies at dusk.", "text/plain")}}
    return {"json": entry.body, "params": entry.params}


def _routes() -> set[tuple[str, str]]:
    # Every documented operation; the catch-all for unknown /api paths is not one.
    paths = create_api().openapi()["paths"]
    return {(method.upper(), path) for path, operations in paths.items() for method in operations}


def test_every_route_has_a_matrix_entry() -> None:
    missing = _routes() - set(MATRIX)
    assert not missing, f"add these routes to the authorization matrix: {sorted(missing)}"
    assert not set(MATRIX) - _routes(), "the matrix names routes that no longer exist"


@dataclass
class World:
    owner: User
    stranger_headers: dict[str, str]
    ids: dict[str, str]


@pytest.fixture
async def world(db: AsyncSession, container: FakeProvidersContainer) -> World:
    owner = await make_user(db, display_name="Owner")
    stranger = await make_user(db, display_name="Stranger")
    session = await conversations.create_session(db, actor=owner, character_id="socrates")
    key, _ = await api_keys_service.create_api_key(db, actor=owner, name="owner key")
    document = await documents_service.upload_to_session(
        db,
        actor=owner,
        session_id=session.id,
        upload=documents_service.Upload("owner-notes.txt", b"Owner's private notes on owls."),
        files=container.file_store,
        limits=container.extraction_limits,
    )
    return World(
        owner=owner,
        stranger_headers=await bearer_for(db, stranger, container.settings),
        ids={
            "session_id": str(session.id),
            "key_id": str(key.id),
            "character_id": "socrates",
            "document_id": str(document.id),
        },
    )


def _url(path: str, ids: dict[str, str]) -> str:
    return path.format(**ids)


PROTECTED = sorted(key for key, entry in MATRIX.items() if entry.kind != PUBLIC)
OWNED_ROUTES = sorted(key for key, entry in MATRIX.items() if entry.kind == OWNED)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_anonymous_callers_are_refused(
    anon_client: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    entry = MATRIX[(method, path)]
    response = await anon_client.request(method, _url(path, world.ids), **_request_kwargs(entry))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize(("method", "path"), OWNED_ROUTES)
async def test_strangers_cannot_reach_other_peoples_objects(
    anon_client: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    entry = MATRIX[(method, path)]
    response = await anon_client.request(
        method, _url(path, world.ids), headers=world.stranger_headers, **_request_kwargs(entry)
    )
    assert response.status_code == 404, response.text
    body = response.text
    assert world.ids["session_id"] not in body or "No such" in body
    assert "Owner" not in body and world.owner.email not in body
    assert "owls" not in body.lower()


ADMIN_ROUTES = sorted(key for key, entry in MATRIX.items() if entry.kind == ADMIN)


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
async def test_users_are_refused_admin_routes(
    anon_client: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    entry = MATRIX[(method, path)]
    response = await anon_client.request(
        method, _url(path, world.ids), headers=world.stranger_headers, **_request_kwargs(entry)
    )
    assert response.status_code == 403, response.text
    assert set(response.json()) == {"error"}


async def test_objects_survive_a_strangers_attempts(
    anon_client: httpx.AsyncClient,
    world: World,
    db: AsyncSession,
    container: FakeProvidersContainer,
) -> None:
    for method, path in OWNED_ROUTES:
        await anon_client.request(
            method, _url(path, world.ids), headers=world.stranger_headers,
            **_request_kwargs(MATRIX[(method, path)]),
        )  # fmt: skip
    owner_headers = await bearer_for(db, world.owner, container.settings)
    session = await anon_client.get(
        f"/api/v1/chat/sessions/{world.ids['session_id']}", headers=owner_headers
    )
    keys = await anon_client.get("/api/v1/api-keys", headers=owner_headers)
    document = await anon_client.get(
        f"/api/v1/documents/{world.ids['document_id']}", headers=owner_headers
    )
    assert session.status_code == 200 and session.json()["title"] == "New conversation"
    assert [k["revoked_at"] for k in keys.json()] == [None]
    assert document.status_code == 200 and document.json()["status"] == "queued"


async def test_disabled_users_live_token_stops_working(
    anon_client: httpx.AsyncClient, db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    headers = await bearer_for(db, user, container.settings)
    assert (await anon_client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    user.disabled = True
    db.add(user)
    await db.commit()
    assert (await anon_client.get("/api/v1/auth/me", headers=headers)).status_code == 401


async def test_admin_role_is_not_taken_from_the_token(
    anon_client: httpx.AsyncClient, db: AsyncSession, container: FakeProvidersContainer
) -> None:
    admin = await make_user(db, role=Role.ADMIN)
    headers = await bearer_for(db, admin, container.settings)
    admin.role = Role.USER
    db.add(admin)
    await db.commit()
    me = await anon_client.get("/api/v1/auth/me", headers=headers)
    assert me.json()["role"] == "user"
