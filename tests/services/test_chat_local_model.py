"""A chat turn against the real embedded model server, including it dying mid-reply."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.models import ChatMessage, MessageStatus
from histora.providers.chat_models import LocalChatModel
from histora.providers.chat_types import ModelSpec
from histora.providers.local_model import MODEL_ALIAS, LocalModelServer, local_chat_model
from histora.services import chat as chat_service
from histora.services import conversations
from histora.settings import Settings
from tests.conftest import FakeProvidersContainer
from tests.factories import make_user
from tests.support import free_port

pytestmark = pytest.mark.local_model


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LocalModelServer]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path, local_model_port=free_port(), local_model_threads=1
    )
    server = LocalModelServer(settings)
    assert server.installation_problem() is None, "run ./scripts/setup.sh first"
    async with server.run():
        yield server


def _model(server: LocalModelServer, *, max_tokens: int = 96) -> LocalChatModel:
    spec = ModelSpec(name=MODEL_ALIAS, temperature=0.0, max_tokens=max_tokens, context_window=2048)
    return local_chat_model(server, [spec], timeout_seconds=60)


async def _reply(db: AsyncSession, session_id: uuid.UUID) -> ChatMessage:
    db.expunge_all()
    rows = await db.exec(
        select(ChatMessage).where(
            ChatMessage.session_id == session_id, ChatMessage.role == "assistant"
        )
    )
    return rows.all()[-1]


async def test_socrates_answers_from_the_local_model(
    db: AsyncSession, container: FakeProvidersContainer, server: LocalModelServer
) -> None:
    user = await make_user(db)
    session_id = (await conversations.create_session(db, actor=user, character_id="socrates")).id
    turn = await chat_service.start_turn(
        db, actor=user, session_id=session_id, content="Who are you?"
    )
    deltas = 0
    async for event in chat_service.stream_turn(
        container.db_session, turn=turn, chat_model=_model(server)
    ):
        deltas += isinstance(event, chat_service.ReplyDelta)
    reply = await _reply(db, session_id)
    assert reply.status == MessageStatus.COMPLETE
    assert reply.content.strip() and deltas > 3
    assert reply.model == MODEL_ALIAS
    assert reply.prompt_tokens > 50 and 0 < reply.completion_tokens <= 96
    # llama-server says when max tokens ended the reply, and the reply is marked so.
    assert reply.cut_short == (reply.completion_tokens == 96)
    short = _model(server, max_tokens=8)
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Go on.")
    async for _ in chat_service.stream_turn(container.db_session, turn=turn, chat_model=short):
        pass
    reply = await _reply(db, session_id)
    assert reply.status == MessageStatus.COMPLETE
    assert reply.completion_tokens == 8 and reply.cut_short


async def test_killing_the_server_mid_reply_saves_a_failed_partial(
    db: AsyncSession, container: FakeProvidersContainer, server: LocalModelServer
) -> None:
    user = await make_user(db)
    session_id = (await conversations.create_session(db, actor=user, character_id="socrates")).id
    turn = await chat_service.start_turn(
        db, actor=user, session_id=session_id, content="Tell me about Athens."
    )
    events = []
    async for event in chat_service.stream_turn(
        container.db_session, turn=turn, chat_model=_model(server)
    ):
        events.append(event)
        if len(events) == 3 and server._process is not None:
            server._process.kill()
    assert isinstance(events[-1], chat_service.ReplyFailed)
    streamed = "".join(e.text for e in events if isinstance(e, chat_service.ReplyDelta))
    reply = await _reply(db, session_id)
    assert reply.status == MessageStatus.FAILED
    assert reply.content == streamed and streamed
    assert reply.error

    # The server is restarted and the same conversation carries on.
    await server.start()
    again = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Go on.")
    async for _ in chat_service.stream_turn(
        container.db_session, turn=again, chat_model=_model(server)
    ):
        pass
    assert (await _reply(db, session_id)).status == MessageStatus.COMPLETE
