"""The chat REST routes, one test per status code, and the SSE stream."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.api import create_api
from histora.models import ChatMessage, MessageStatus, User
from histora.models.base import utcnow
from histora.providers.fakes import FakeChatModel
from histora.services.conversations import STALE_REPLY_SECONDS
from tests.conftest import FakeProvidersContainer, bearer_for
from tests.support import parse_sse, serve_app

SESSIONS = "/api/v1/chat/sessions"


async def _create(client: httpx.AsyncClient, character_id: str = "socrates") -> str:
    response = await client.post(SESSIONS, json={"character_id": character_id})
    assert response.status_code == 201
    return str(response.json()["id"])


async def test_create_session_is_201(client: httpx.AsyncClient) -> None:
    response = await client.post(SESSIONS, json={"character_id": "socrates"})
    assert response.status_code == 201
    body = response.json()
    assert body["character_id"] == "socrates" and body["character_name"] == "Socrates"
    assert body["title"] == "New conversation"


async def test_create_session_unknown_character_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(SESSIONS, json={"character_id": "nobody"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_create_session_without_character_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(SESSIONS, json={})
    assert response.status_code == 422


async def test_list_sessions_is_200_with_previews(
    client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    session_id = await _create(client)
    container.__dict__["chat_model"] = FakeChatModel(reply="I know that I know nothing.")
    await client.post(f"{SESSIONS}/{session_id}/messages", json={"content": "Hi", "stream": False})
    response = await client.get(SESSIONS)
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 1
    assert body["items"][0]["preview"] == "I know that I know nothing."
    assert body["items"][0]["title"] == "Hi"


async def test_get_session_is_200(client: httpx.AsyncClient) -> None:
    session_id = await _create(client)
    response = await client.get(f"{SESSIONS}/{session_id}")
    assert response.status_code == 200
    assert response.json()["id"] == session_id


async def test_get_unknown_session_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{SESSIONS}/{uuid.uuid4()}")
    assert response.status_code == 404


async def test_malformed_session_id_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{SESSIONS}/not-a-uuid")
    assert response.status_code == 422


async def test_patch_renames_and_archives(client: httpx.AsyncClient) -> None:
    session_id = await _create(client)
    response = await client.patch(
        f"{SESSIONS}/{session_id}", json={"title": "On courage", "archived": True}
    )
    assert response.status_code == 200
    assert response.json()["title"] == "On courage" and response.json()["archived"] is True
    assert (await client.get(SESSIONS)).json()["total"] == 0
    archived = await client.get(SESSIONS, params={"include_archived": "true"})
    assert archived.json()["total"] == 1


async def test_a_title_loses_the_characters_that_would_reorder_it(
    client: httpx.AsyncClient,
) -> None:
    # U+202E would show "My \u202eeltit" as "My title" reversed in every list.
    session_id = await _create(client)
    response = await client.patch(
        f"{SESSIONS}/{session_id}", json={"title": "My \u202eeltit\u202c \u2067note\u2069"}
    )
    assert response.status_code == 200 and response.json()["title"] == "My eltit note"


async def test_patch_with_nothing_is_422(client: httpx.AsyncClient) -> None:
    session_id = await _create(client)
    response = await client.patch(f"{SESSIONS}/{session_id}", json={})
    assert response.status_code == 422


async def test_delete_is_204_then_404(client: httpx.AsyncClient) -> None:
    session_id = await _create(client)
    assert (await client.delete(f"{SESSIONS}/{session_id}")).status_code == 204
    assert (await client.get(f"{SESSIONS}/{session_id}")).status_code == 404


async def test_delete_during_a_reply_is_409_and_after_a_crash_is_204(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    session_id = await _create(client)
    reply = ChatMessage(
        session_id=uuid.UUID(session_id), role="assistant", status=MessageStatus.STREAMING
    )
    db.add(reply)
    await db.commit()
    response = await client.delete(f"{SESSIONS}/{session_id}")
    assert response.status_code == 409
    assert "still being written" in response.json()["error"]["message"]
    assert (await client.get(f"{SESSIONS}/{session_id}")).status_code == 200

    # A reply its process left streaming when it died does not hold the conversation.
    reply.updated_at = utcnow() - timedelta(seconds=STALE_REPLY_SECONDS + 1)
    db.add(reply)
    await db.commit()
    assert (await client.delete(f"{SESSIONS}/{session_id}")).status_code == 204
    assert (await client.get(f"{SESSIONS}/{session_id}")).status_code == 404


async def test_text_with_a_nul_character_is_422_and_nothing_is_saved(
    client: httpx.AsyncClient,
) -> None:
    # PostgreSQL cannot store U+0000 in text: refused up front, on SQLite too.
    session_id = await _create(client)
    sent = await client.post(
        f"{SESSIONS}/{session_id}/messages", json={"content": "hi\u0000there", "stream": False}
    )
    renamed = await client.patch(f"{SESSIONS}/{session_id}", json={"title": "a\u0000b"})
    for response, what in ((sent, "A message"), (renamed, "A title")):
        assert response.status_code == 422
        assert response.json()["error"]["message"] == (
            f"{what} cannot contain the NUL character (U+0000)."
        )
    assert (await client.get(f"{SESSIONS}/{session_id}/messages")).json()["total"] == 0
    assert (await client.get(f"{SESSIONS}/{session_id}")).json()["title"] == "New conversation"


async def test_send_streams_sse_events(
    client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    container.__dict__["chat_model"] = FakeChatModel(reply="Virtue is knowledge.", chunk_size=5)
    session_id = await _create(client)
    response = await client.post(
        f"{SESSIONS}/{session_id}/messages", json={"content": "What is virtue?"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[:2] == ["message", "sources"] and names[-1] == "done"
    assert set(names[2:-1]) == {"delta"}
    assert events[1][1] == {"citations": []}  # no documents for this character yet
    assert events[0][1]["content"] == "What is virtue?" and events[0][1]["role"] == "user"
    assert (
        "".join(data["text"] for name, data in events if name == "delta") == "Virtue is knowledge."
    )
    done = events[-1][1]
    assert done["status"] == "complete" and done["content"] == "Virtue is knowledge."
    assert done["prompt_tokens"] > 0


async def test_send_without_stream_returns_201(
    client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    container.__dict__["chat_model"] = FakeChatModel(reply="Plainly so.")
    session_id = await _create(client)
    response = await client.post(
        f"{SESSIONS}/{session_id}/messages", json={"content": "Is it?", "stream": False}
    )
    assert response.status_code == 201
    assert response.json()["reply"]["content"] == "Plainly so."
    assert response.json()["message"]["content"] == "Is it?"


async def test_model_failure_streams_error_event(
    client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    container.__dict__["chat_model"] = FakeChatModel(reply="Partial words here", fail_after_chars=7)
    session_id = await _create(client)
    response = await client.post(f"{SESSIONS}/{session_id}/messages", json={"content": "Go"})
    events = parse_sse(response.text)
    error = next(data for name, data in events if name == "error")
    assert error["code"] == "model_stream_failed" and error["message"]
    assert events[-1][0] == "done" and events[-1][1]["status"] == "failed"
    assert events[-1][1]["content"] == "Partial"


async def test_model_unavailable_without_stream_is_503(
    client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    container.__dict__["chat_model"] = FakeChatModel(fail_before_first_token=True)
    session_id = await _create(client)
    response = await client.post(
        f"{SESSIONS}/{session_id}/messages", json={"content": "Hello", "stream": False}
    )
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_unavailable"
    assert error["details"]["reply"]["status"] == "failed"


async def test_empty_message_is_422(client: httpx.AsyncClient) -> None:
    session_id = await _create(client)
    response = await client.post(f"{SESSIONS}/{session_id}/messages", json={"content": "   "})
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "A message cannot be empty."


async def test_unknown_fields_and_loose_booleans_are_422_and_nothing_is_saved(
    client: httpx.AsyncClient,
) -> None:
    session_id = await _create(client)
    url = f"{SESSIONS}/{session_id}/messages"
    # A misspelt client_message_id would otherwise turn idempotency off unnoticed.
    for body in (
        {"content": "Hi", "clientMessageId": "m-1"},
        {"content": "Hi", "stream": "yes"},
        {"content": "Hi", "stream": 1},
    ):
        response = await client.post(url, json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "invalid_input", body
    created = await client.post(SESSIONS, json={"character_id": "socrates", "title": "Mine"})
    renamed = await client.patch(f"{SESSIONS}/{session_id}", json={"archived": "true"})
    assert (created.status_code, renamed.status_code) == (422, 422)
    assert (await client.get(f"{url}?limit=10")).json()["total"] == 0
    assert (await client.get(SESSIONS)).json()["total"] == 1


async def test_send_to_unknown_session_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{SESSIONS}/{uuid.uuid4()}/messages", json={"content": "Hi"})
    assert response.status_code == 404


async def test_send_during_a_reply_is_409(client: httpx.AsyncClient, db: AsyncSession) -> None:
    session_id = await _create(client)
    db.add(
        ChatMessage(
            session_id=uuid.UUID(session_id), role="assistant", status=MessageStatus.STREAMING
        )
    )
    await db.commit()
    response = await client.post(f"{SESSIONS}/{session_id}/messages", json={"content": "Hi"})
    assert response.status_code == 409


async def test_retried_send_replays_the_reply(
    client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    model = FakeChatModel(reply="Only once.")
    container.__dict__["chat_model"] = model
    session_id = await _create(client)
    body = {"content": "Hi", "client_message_id": "abc-1", "stream": False}
    first = await client.post(f"{SESSIONS}/{session_id}/messages", json=body)
    second = await client.post(f"{SESSIONS}/{session_id}/messages", json=body)
    assert first.json() == second.json()
    assert len(model.calls) == 1
    messages = (await client.get(f"{SESSIONS}/{session_id}/messages")).json()
    assert messages["total"] == 2

    # The same id with other words is no retry: refused, and nothing more is saved.
    other = await client.post(
        f"{SESSIONS}/{session_id}/messages", json={**body, "content": "Something else"}
    )
    assert other.status_code == 409
    assert "already used for another message" in other.json()["error"]["message"]
    assert (await client.get(f"{SESSIONS}/{session_id}/messages")).json()["total"] == 2
    assert len(model.calls) == 1


async def test_list_messages_pages(
    client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    container.__dict__["chat_model"] = FakeChatModel(reply="Yes.")
    session_id = await _create(client)
    for text in ("one", "two"):
        await client.post(
            f"{SESSIONS}/{session_id}/messages", json={"content": text, "stream": False}
        )
    page = (
        await client.get(f"{SESSIONS}/{session_id}/messages", params={"offset": 1, "limit": 2})
    ).json()
    assert page["total"] == 4
    assert [m["content"] for m in page["items"]] == ["Yes.", "two"]


async def test_regenerate_streams_a_new_reply(
    client: httpx.AsyncClient, container: FakeProvidersContainer
) -> None:
    container.__dict__["chat_model"] = FakeChatModel(replies=["First.", "Second."])
    session_id = await _create(client)
    await client.post(f"{SESSIONS}/{session_id}/messages", json={"content": "Q", "stream": False})
    response = await client.post(f"{SESSIONS}/{session_id}/regenerate")
    events = parse_sse(response.text)
    assert events[-1][1]["content"] == "Second."
    messages = (await client.get(f"{SESSIONS}/{session_id}/messages")).json()["items"]
    assert [m["content"] for m in messages] == ["Q", "Second."]


async def test_regenerate_without_reply_is_422(client: httpx.AsyncClient) -> None:
    session_id = await _create(client)
    response = await client.post(f"{SESSIONS}/{session_id}/regenerate")
    assert response.status_code == 422


async def test_client_disconnect_keeps_the_partial_reply(
    container: FakeProvidersContainer, db: AsyncSession, user: User
) -> None:
    container.__dict__["chat_model"] = FakeChatModel(
        reply="word " * 200, chunk_size=5, delay_seconds=0.01
    )
    headers = await bearer_for(db, user, container.settings)
    async with (
        serve_app(create_api(container.settings)) as base_url,
        httpx.AsyncClient(base_url=base_url, headers=headers) as http,
    ):
        session_id = await _create(http)
        async with http.stream(
            "POST", f"{SESSIONS}/{session_id}/messages", json={"content": "Talk"}
        ) as response:
            seen = 0
            async for line in response.aiter_lines():
                seen += line.startswith("event: delta")
                if seen == 3:
                    break
        # The server notices the disconnect and saves what it had streamed.
        for _ in range(200):
            db.expunge_all()
            reply = (
                await db.exec(
                    select(ChatMessage).where(
                        ChatMessage.session_id == uuid.UUID(session_id),
                        ChatMessage.role == "assistant",
                    )
                )
            ).one()
            if reply.status != MessageStatus.STREAMING:
                break
            await asyncio.sleep(0.02)
    assert reply.status == MessageStatus.STOPPED
    assert reply.content.startswith("word word")
    assert len(reply.content) < len("word " * 200)
