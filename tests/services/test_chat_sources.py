"""Cited answers: retrieved passages reach the prompt as numbered sources and are
stored with the reply; a session's own documents never reach another user's chat."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.models import ChatMessage, MessageRole, Role, User
from histora.providers.fakes import FakeChatModel, FakeVectorStore
from histora.services import chat as chat_service
from histora.services import conversations
from histora.services import documents as documents_service
from histora.services.ingestion import process_pending
from tests.conftest import FakeProvidersContainer
from tests.factories import make_user

MEDITATION = (
    "Begin the morning by saying to thyself: I shall meet with the busybody, the "
    "ungrateful, arrogant, deceitful. Anger at them is useless; we are made for "
    "cooperation, like feet, like hands, like eyelids.\n\n"
    "How much more grievous are the consequences of anger than the causes of it.\n\n"
)
UNRELATED = "The price of olive oil in the market rose sharply after the frost.\n\n"


async def _add_document(
    db: AsyncSession,
    container: FakeProvidersContainer,
    actor: User,
    text: str,
    *,
    name: str,
    session_id: uuid.UUID | None = None,
) -> None:
    upload = documents_service.Upload(name, text.encode())
    common = {"files": container.file_store, "limits": container.extraction_limits}
    if session_id is None:
        await documents_service.upload_to_character(
            db, actor=actor, character_id="marcus-aurelius", upload=upload, **common
        )
    else:
        await documents_service.upload_to_session(
            db, actor=actor, session_id=session_id, upload=upload, **common
        )
    await process_pending(container.ingestion_context())


async def _turn_events(
    db: AsyncSession,
    container: FakeProvidersContainer,
    user: User,
    session_id: uuid.UUID,
    model: FakeChatModel,
    question: str,
) -> list[chat_service.TurnEvent]:
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content=question)
    return [
        event
        async for event in chat_service.stream_turn(
            container.db_session, turn=turn, chat_model=model, retriever=container.retriever
        )
    ]


async def _reply(db: AsyncSession, session_id: uuid.UUID) -> ChatMessage:
    db.expunge_all()
    rows = await db.exec(
        select(ChatMessage).where(
            ChatMessage.session_id == session_id, ChatMessage.role == MessageRole.ASSISTANT
        )
    )
    return rows.one()


async def test_sources_come_first_reach_the_prompt_and_are_stored(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    admin = await make_user(db, role=Role.ADMIN)
    await _add_document(db, container, admin, MEDITATION + UNRELATED, name="meditations.txt")
    user = await make_user(db)
    session = await conversations.create_session(db, actor=user, character_id="marcus-aurelius")
    model = FakeChatModel(reply="Anger costs more than its causes [1].")

    events = await _turn_events(db, container, user, session.id, model, "What about anger?")

    assert isinstance(events[0], chat_service.ReplySources)
    citations = events[0].citations
    assert citations and citations[0].n == 1
    assert citations[0].document_name == "meditations.txt"
    assert "anger" in citations[0].text.lower()
    assert isinstance(events[1], chat_service.ReplyDelta)
    system = model.calls[0][0].content
    assert "[1] meditations.txt" in system and "cite each one you use" in system
    assert "consequences of anger" in system

    saved = await _reply(db, session.id)
    assert saved.citations[0]["n"] == 1 and saved.citations[0]["cited"] is True
    assert all(c["cited"] is False for c in saved.citations[1:])
    assert saved.citations[0]["text"] == citations[0].text


async def test_no_documents_means_no_sources_section(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session = await conversations.create_session(db, actor=user, character_id="socrates")
    model = FakeChatModel(reply="Know thyself.")
    events = await _turn_events(db, container, user, session.id, model, "What is virtue?")
    assert events[0] == chat_service.ReplySources([])
    assert "Passages from your sources" not in model.calls[0][0].content


async def test_a_users_session_document_never_reaches_another_users_chat(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    alice, bob = await make_user(db), await make_user(db)
    alice_session = await conversations.create_session(
        db, actor=alice, character_id="marcus-aurelius"
    )
    secret = "My anger diary: the vault code is 4417 and I told nobody.\n"
    await _add_document(db, container, alice, secret, name="diary.txt", session_id=alice_session.id)
    bob_session = await conversations.create_session(db, actor=bob, character_id="marcus-aurelius")
    model = FakeChatModel(reply="I cannot say.")

    events = await _turn_events(db, container, bob, bob_session.id, model, "anger diary vault code")
    assert events[0] == chat_service.ReplySources([])
    assert "4417" not in model.calls[0][0].content

    alice_model = FakeChatModel(reply="It is 4417 [1].")
    mine = await _turn_events(
        db, container, alice, alice_session.id, alice_model, "anger diary vault code"
    )
    assert isinstance(mine[0], chat_service.ReplySources)
    assert [c.document_name for c in mine[0].citations] == ["diary.txt"]


async def test_retrieval_failure_still_answers_without_sources(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    admin = await make_user(db, role=Role.ADMIN)
    await _add_document(db, container, admin, MEDITATION, name="meditations.txt")
    container.__dict__["vector_store"] = FakeVectorStore(healthy=False)
    container.__dict__.pop("retriever", None)
    user = await make_user(db)
    session = await conversations.create_session(db, actor=user, character_id="marcus-aurelius")
    events = await _turn_events(
        db, container, user, session.id, FakeChatModel(reply="Still here."), "anger?"
    )
    assert isinstance(events[-1], chat_service.ReplyDone)
    assert events[-1].message.content == "Still here."


async def test_a_turn_knows_whether_its_scope_has_ready_sources(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    """Turns without sources skip retrieval; any ready document, shared or own, counts."""
    user = await make_user(db)
    session = await conversations.create_session(db, actor=user, character_id="marcus-aurelius")
    first = await chat_service.start_turn(db, actor=user, session_id=session.id, content="Hi")
    assert first.may_have_sources is False
    events = chat_service.stream_turn(
        container.db_session, turn=first, chat_model=FakeChatModel(reply="Hello.")
    )
    sources, *_rest, done = [event async for event in events]
    assert sources == chat_service.ReplySources([]) and isinstance(done, chat_service.ReplyDone)
    await _add_document(db, container, user, MEDITATION, name="mine.txt", session_id=session.id)

    second = await chat_service.start_turn(db, actor=user, session_id=session.id, content="Anger?")
    assert second.may_have_sources is True

    other = await conversations.create_session(db, actor=user, character_id="marcus-aurelius")
    third = await chat_service.start_turn(db, actor=user, session_id=other.id, content="Anger?")
    assert third.may_have_sources is False  # the document belongs to the first session


async def test_reading_and_saving_an_uploaded_file_hold_no_transaction(
    db: AsyncSession, container: FakeProvidersContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On SQLite a transaction holds the database's write lock, and reading a large PDF
    # takes seconds, writing and syncing it to disk a while too: every chat send waits.
    in_transaction: list[tuple[str, bool]] = []
    read, save = documents_service.extract, container.file_store.save

    def watched_read(*args: Any, **kwargs: Any) -> Any:
        in_transaction.append(("read", db.in_transaction()))
        return read(*args, **kwargs)

    async def watched_save(data: bytes) -> str:
        in_transaction.append(("save", db.in_transaction()))
        return await save(data)

    monkeypatch.setattr(documents_service, "extract", watched_read)
    monkeypatch.setattr(container.file_store, "save", watched_save)
    admin = await make_user(db, role=Role.ADMIN)
    await _add_document(db, container, admin, MEDITATION, name="meditations.txt")
    user = await make_user(db)
    session = await conversations.create_session(db, actor=user, character_id="socrates")
    await _add_document(db, container, user, UNRELATED, name="notes.txt", session_id=session.id)
    assert in_transaction == [("read", False), ("save", False)] * 2
