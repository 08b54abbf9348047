"""Documents over REST: upload, validation, ingestion status, management, search."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.models import Role, User
from histora.models.documents import Document, DocumentChunk
from histora.services import conversations
from histora.services.ingestion import process_pending
from tests.conftest import SHARED_CORPUS, FakeProvidersContainer, bearer_for
from tests.factories import make_user
from tests.hostile_files import hostile_cases, sample_docx, text_pdf

ANGER = (
    "On anger. When another man's fault offends thee, turn to thyself and consider "
    "what error of the like kind thou thyself dost commit. Anger is a weakness, and "
    "gentleness is a mark of strength.\n\n"
)
GARDENS = "On gardens. Tend the roses in spring and prune the vines before the rains.\n\n"


@pytest.fixture
async def admin(db: AsyncSession) -> User:
    return await make_user(db, role=Role.ADMIN, display_name="Admin")


@pytest.fixture
async def admin_client(
    anon_client: httpx.AsyncClient, db: AsyncSession, admin: User, container: FakeProvidersContainer
) -> httpx.AsyncClient:
    anon_client.headers.update(await bearer_for(db, admin, container.settings))
    return anon_client


def _file(name: str, data: bytes) -> dict[str, tuple[str, bytes, str]]:
    # The Content-Type a client claims is deliberately wrong: the bytes decide.
    return {"file": (name, data, "application/octet-stream")}


async def _upload(
    http: httpx.AsyncClient, name: str, data: bytes, *, character_id: str = "marcus-aurelius"
) -> httpx.Response:
    return await http.post(f"/api/v1/characters/{character_id}/documents", files=_file(name, data))


def _stored_files(container: FakeProvidersContainer) -> list[Path]:
    root = container.file_store.root
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


async def test_admin_upload_is_queued_then_ingested_to_ready(
    admin_client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    created = await _upload(admin_client, "thoughts.txt", (ANGER + GARDENS).encode())
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "queued" and body["kind"] == "txt"
    assert body["scope"] == "character" and body["character_id"] == "marcus-aurelius"
    assert "storage_key" not in body and "sha256" not in body

    assert await process_pending(container.ingestion_context()) == 1

    ready = (await admin_client.get(f"/api/v1/documents/{body['id']}")).json()
    assert ready["status"] == "ready" and ready["progress"] == 1.0
    assert ready["chunk_count"] >= 1 and ready["error"] is None
    space = container.ingestion_context().space
    assert (
        await container.vector_store.count(space=space, scope="character:marcus-aurelius")
        == (ready["chunk_count"])
    )


async def test_real_pdf_from_the_corpus_is_ingested_with_pages(
    admin_client: httpx.AsyncClient, container: FakeProvidersContainer, db: AsyncSession
) -> None:
    data = (SHARED_CORPUS / "marcus-aurelius__meditations.pdf").read_bytes()
    created = await _upload(admin_client, "marcus-aurelius__meditations.pdf", data)
    assert created.status_code == 201, created.text
    assert created.json()["kind"] == "pdf" and created.json()["pages"] > 10
    await process_pending(container.ingestion_context())
    document = (await admin_client.get(f"/api/v1/documents/{created.json()['id']}")).json()
    assert document["status"] == "ready", document
    pages = (
        await db.exec(
            select(DocumentChunk.page).where(DocumentChunk.document_id == uuid.UUID(document["id"]))
        )
    ).all()
    assert min(p for p in pages if p) == 1 and max(p for p in pages if p) > 10


@pytest.mark.parametrize("case", hostile_cases(max_bytes=20 * 1024 * 1024), ids=lambda c: c.id)
async def test_hostile_files_get_a_clear_4xx_and_nothing_is_stored(
    admin_client: httpx.AsyncClient,
    container: FakeProvidersContainer,
    db: AsyncSession,
    case: object,
) -> None:
    from tests.hostile_files import HostileCase

    assert isinstance(case, HostileCase)
    response = await _upload(admin_client, case.filename, case.build())
    assert 400 <= response.status_code < 500, response.text
    assert response.status_code in {413, 415, 422}
    error = response.json()["error"]
    assert case.reason in error["message"].lower(), error
    assert "Traceback" not in response.text and "Error(" not in error["message"]
    assert (await db.exec(select(Document))).all() == []
    assert _stored_files(container) == []


async def test_type_is_decided_by_content_not_by_name(admin_client: httpx.AsyncClient) -> None:
    disguised = await _upload(admin_client, "letter.txt", sample_docx(("A letter to Lucilius.",)))
    assert disguised.status_code == 201 and disguised.json()["kind"] == "docx"
    assert disguised.json()["filename"] == "letter.txt"


async def test_declared_body_over_the_cap_is_refused_before_parsing(
    admin_client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    response = await admin_client.post(
        "/api/v1/characters/marcus-aurelius/documents",
        content=b"x" * 10,
        headers={"content-length": str(container.settings.upload_max_bytes * 2)},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"


async def test_duplicate_in_the_same_scope_is_a_conflict(admin_client: httpx.AsyncClient) -> None:
    assert (await _upload(admin_client, "a.txt", ANGER.encode())).status_code == 201
    again = await _upload(admin_client, "copy-of-a.txt", ANGER.encode())
    assert again.status_code == 409
    assert "a.txt" in again.json()["error"]["message"]
    elsewhere = await _upload(admin_client, "a.txt", ANGER.encode(), character_id="seneca")
    assert elsewhere.status_code == 201


async def test_path_tricks_in_the_filename_are_only_a_label(
    admin_client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    response = await _upload(admin_client, "..\\..\\etc/passwd.txt", ANGER.encode())
    assert response.status_code == 201
    assert response.json()["filename"] == "passwd.txt"
    [stored] = _stored_files(container)
    assert stored.is_relative_to(container.file_store.root)
    assert "passwd" not in stored.name


async def test_users_cannot_add_to_a_knowledge_base(client: httpx.AsyncClient) -> None:
    response = await _upload(client, "a.txt", ANGER.encode())
    assert response.status_code == 403
    listing = await client.get("/api/v1/characters/marcus-aurelius/documents")
    assert listing.status_code == 403


async def test_unknown_character_is_404(admin_client: httpx.AsyncClient) -> None:
    assert (
        await _upload(admin_client, "a.txt", b"Hello there.", character_id="nobody")
    ).status_code == 404


async def test_delete_removes_vectors_file_and_row(
    admin_client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    created = (await _upload(admin_client, "a.txt", (ANGER + GARDENS).encode())).json()
    await process_pending(container.ingestion_context())
    space = container.ingestion_context().space
    scope = "character:marcus-aurelius"
    assert await container.vector_store.count(space=space, scope=scope) > 0

    assert (await admin_client.delete(f"/api/v1/documents/{created['id']}")).status_code == 204
    assert await container.vector_store.count(space=space, scope=scope) == 0
    assert _stored_files(container) == []
    assert (await admin_client.get(f"/api/v1/documents/{created['id']}")).status_code == 404


async def test_reindex_queues_and_rebuilds(
    admin_client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    created = (await _upload(admin_client, "a.txt", (ANGER + GARDENS).encode())).json()
    await process_pending(container.ingestion_context())
    queued = await admin_client.post(f"/api/v1/documents/{created['id']}/reindex")
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    again = await admin_client.post(f"/api/v1/documents/{created['id']}/reindex")
    assert again.status_code == 409
    await process_pending(container.ingestion_context())
    document = (await admin_client.get(f"/api/v1/documents/{created['id']}")).json()
    assert document["status"] == "ready"
    space = container.ingestion_context().space
    count = await container.vector_store.count(space=space, scope="character:marcus-aurelius")
    assert count == document["chunk_count"]


async def test_character_search_returns_located_passages(
    admin_client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    text = ANGER + GARDENS
    created = (await _upload(admin_client, "thoughts.txt", text.encode())).json()
    await process_pending(container.ingestion_context())
    response = await admin_client.get(
        "/api/v1/characters/marcus-aurelius/search", params={"q": "anger and gentleness", "k": 3}
    )
    assert response.status_code == 200, response.text
    passages = response.json()
    assert passages and passages[0]["document_id"] == created["id"]
    top = passages[0]
    assert "gentleness" in top["text"]
    assert top["document_name"] == "thoughts.txt" and 0 < top["score"] <= 1
    assert top["char_end"] - top["char_start"] == len(top["text"])


async def test_search_rejects_bad_parameters(admin_client: httpx.AsyncClient) -> None:
    base = "/api/v1/characters/marcus-aurelius/search"
    assert (await admin_client.get(base, params={"q": ""})).status_code == 422
    assert (await admin_client.get(base, params={"q": "x", "k": 0})).status_code == 422
    assert (await admin_client.get(base, params={"q": "   "})).status_code == 422


async def test_session_documents_stay_in_their_session(
    anon_client: httpx.AsyncClient, db: AsyncSession, container: FakeProvidersContainer
) -> None:
    alice, bob = await make_user(db), await make_user(db)
    alice_headers = await bearer_for(db, alice, container.settings)
    bob_headers = await bearer_for(db, bob, container.settings)
    alice_session = await conversations.create_session(db, actor=alice, character_id="seneca")
    bob_session = await conversations.create_session(db, actor=bob, character_id="seneca")
    secret = b"My private diary: the password to the garden shed is marigold.\n"
    uploaded = await anon_client.post(
        f"/api/v1/chat/sessions/{alice_session.id}/documents",
        files=_file("diary.md", secret),
        headers=alice_headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    await process_pending(container.ingestion_context())

    mine = await anon_client.get(
        f"/api/v1/chat/sessions/{alice_session.id}/search",
        params={"q": "garden shed password"},
        headers=alice_headers,
    )
    assert mine.status_code == 200 and "marigold" in mine.json()[0]["text"]
    theirs = await anon_client.get(
        f"/api/v1/chat/sessions/{bob_session.id}/search",
        params={"q": "garden shed password marigold"},
        headers=bob_headers,
    )
    assert theirs.status_code == 200 and theirs.json() == []
    character = await anon_client.get(
        "/api/v1/characters/seneca/search", params={"q": "marigold"}, headers=bob_headers
    )
    assert character.json() == []
    listing = await anon_client.get(
        f"/api/v1/chat/sessions/{alice_session.id}/documents", headers=alice_headers
    )
    assert [d["filename"] for d in listing.json()] == ["diary.md"]


async def test_deleting_a_session_purges_its_documents(
    client: httpx.AsyncClient, db: AsyncSession, user: User, container: FakeProvidersContainer
) -> None:
    session = await conversations.create_session(db, actor=user, character_id="seneca")
    pdf = text_pdf([["Letters on the shortness of life and the use of time."]])
    uploaded = await client.post(
        f"/api/v1/chat/sessions/{session.id}/documents", files=_file("letters.pdf", pdf)
    )
    assert uploaded.status_code == 201, uploaded.text
    await process_pending(container.ingestion_context())
    space = container.ingestion_context().space
    assert await container.vector_store.count(space=space, scope=f"session:{session.id}") > 0

    assert (await client.delete(f"/api/v1/chat/sessions/{session.id}")).status_code == 204
    assert await container.vector_store.count(space=space, scope=f"session:{session.id}") == 0
    assert _stored_files(container) == []
    assert (await db.exec(select(Document))).all() == []


async def test_reflex_upload_route_allows_a_drop_of_several_files(
    admin_client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    cap = container.settings.upload_max_bytes
    over_one_file = str(cap * 2)
    # The body limit sits in front of Reflex's /_upload too; a drop of a few files passes it.
    api_route = await admin_client.post(
        "/api/v1/characters/marcus-aurelius/documents",
        content=b"x",
        headers={"content-length": over_one_file},
    )
    assert api_route.status_code == 413
    assert api_route.json()["error"]["code"] == "file_too_large"
    reflex_route = await admin_client.post(
        "/_upload", content=b"x", headers={"content-length": over_one_file}
    )
    assert reflex_route.status_code != 413
    too_many = await admin_client.post(
        "/_upload", content=b"x", headers={"content-length": str(cap * 6)}
    )
    assert too_many.status_code == 413


async def test_chat_stream_sends_sources_before_the_first_delta(
    admin_client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    from histora.providers.fakes import FakeChatModel
    from tests.support import parse_sse

    await _upload(admin_client, "thoughts.txt", (ANGER + GARDENS).encode())
    await process_pending(container.ingestion_context())
    container.__dict__["chat_model"] = FakeChatModel(reply="Be gentle, not angry [1].")
    session = await admin_client.post(
        "/api/v1/chat/sessions", json={"character_id": "marcus-aurelius"}
    )
    response = await admin_client.post(
        f"/api/v1/chat/sessions/{session.json()['id']}/messages",
        json={"content": "What should I do about anger?"},
    )
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names.index("sources") < names.index("delta")
    citations = dict(events)["sources"]["citations"]
    assert citations[0]["n"] == 1 and citations[0]["document_name"] == "thoughts.txt"
    assert "anger" in citations[0]["text"].lower()
    done = events[-1][1]
    assert done["citations"][0]["cited"] is True
    assert done["citations"][0]["text"] == citations[0]["text"]


async def test_ingestion_warms_the_keyword_index_for_the_next_question(
    admin_client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    await _upload(admin_client, "thoughts.txt", (ANGER + GARDENS).encode())
    await process_pending(container.ingestion_context())
    built = container.keyword_cache.builds
    assert built >= 1
    response = await admin_client.get(
        "/api/v1/characters/marcus-aurelius/search", params={"q": "prune the vines"}
    )
    assert response.status_code == 200 and "vines" in response.json()[0]["text"]
    assert container.keyword_cache.builds == built  # served from the warmed index
