"""``start_turn``'s one-transaction path: what it reads, what it commits, and its edges."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import ConflictError, NotFoundError
from histora.models import ChatMessage, ChatSession, MessageRole, MessageStatus, User
from histora.models.base import utcnow
from histora.providers.fakes import FakeChatModel
from histora.services import chat as chat_service
from histora.services import conversations
from tests.conftest import FakeProvidersContainer
from tests.factories import make_user


async def _session(db: AsyncSession, user: User) -> uuid.UUID:
    return (await conversations.create_session(db, actor=user, character_id="socrates")).id


async def _first_send(db: AsyncSession) -> tuple[User, uuid.UUID, chat_service.PreparedTurn]:
    """A new user's new conversation, and its first question ("First")."""
    user = await make_user(db)
    session_id = await _session(db, user)
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="First")
    return user, session_id, turn


async def _answer(container: FakeProvidersContainer, turn: chat_service.PreparedTurn) -> None:
    async for _ in chat_service.stream_turn(
        container.db_session, turn=turn, chat_model=FakeChatModel(reply="An answer.")
    ):
        pass


async def _send_c1(
    db: AsyncSession, user: User, session_id: uuid.UUID
) -> chat_service.PreparedTurn:
    """The send a client retries: always the same text and client message id."""
    return await chat_service.start_turn(
        db, actor=user, session_id=session_id, content="Hi", client_message_id="c-1"
    )


async def _messages(db: AsyncSession, session_id: uuid.UUID) -> list[ChatMessage]:
    db.expunge_all()
    rows = await db.exec(
        select(ChatMessage)
        .where(ChatMessage.session_id == session_id)
        .order_by(col(ChatMessage.created_at), col(ChatMessage.id))
    )
    return list(rows.all())


async def test_turn_is_committed_with_its_reply_placeholder(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    turn = await chat_service.start_turn(
        db, actor=user, session_id=session_id, content="  What is justice?  "
    )
    # Nothing left pending: the caller may go straight to the model.
    assert not (db.new or db.dirty)
    saved = await _messages(db, session_id)
    assert [(m.role, m.status) for m in saved] == [
        (MessageRole.USER, MessageStatus.COMPLETE),
        (MessageRole.ASSISTANT, MessageStatus.STREAMING),
    ]
    assert saved[0].created_at < saved[1].created_at  # the reply sorts after its question
    # Every other column as a new ChatMessage has it.
    for m in saved:
        assert (m.model, m.error, m.client_message_id, m.citations) == (None, None, None, [])
        assert (m.prompt_tokens, m.completion_tokens, m.credits_charged) == (0, 0, 0)
        assert m.updated_at == m.created_at
    assert (saved[0].content, saved[1].content) == ("What is justice?", "")
    assert turn.user_message.id == saved[0].id and turn.user_message.content == "What is justice?"
    assert turn.user_message == conversations.message_public(saved[0])
    assert turn.assistant_message_id == saved[1].id
    assert turn.voice.name == "Socrates" and turn.history == [] and turn.user_position == 0
    assert turn.character_id == "socrates" and turn.summary == "" and turn.replay is None
    assert turn.may_have_sources is False
    session = await db.get(ChatSession, session_id)
    assert session is not None and session.title == "What is justice?"
    assert session.last_message_at is not None and session.last_message_at >= saved[1].created_at
    assert session.updated_at == session.last_message_at


async def test_history_and_positions_follow_the_summary(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    for question in ("One", "Two", "Three"):
        await _answer(
            container,
            await chat_service.start_turn(db, actor=user, session_id=session_id, content=question),
        )
    await db.exec(
        update(ChatSession)
        .where(col(ChatSession.id) == session_id)
        .values(summarized_message_count=2, summary="They spoke of One.")
    )
    await db.commit()
    db.expunge_all()

    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Four")

    assert turn.summary == "They spoke of One."
    assert turn.user_position == 6
    assert [(position, m.role, m.content) for position, m in turn.history] == [
        (2, "user", "Two"),
        (3, "assistant", "An answer."),
        (4, "user", "Three"),
        (5, "assistant", "An answer."),
    ]
    db.expunge_all()
    session = await db.get(ChatSession, session_id)
    assert session is not None and session.title == "One"  # named by its first message only


async def test_a_stale_reply_is_failed_and_the_send_goes_through(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user, session_id, stuck = await _first_send(db)
    long_ago = utcnow() - timedelta(seconds=chat_service.STALE_REPLY_SECONDS + 60)
    await db.exec(
        update(ChatMessage)
        .where(col(ChatMessage.id) == stuck.assistant_message_id)
        .values(updated_at=long_ago)
    )
    await db.commit()
    db.expunge_all()
    before = utcnow()

    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Second")

    saved = await _messages(db, session_id)
    assert [m.status for m in saved] == [
        MessageStatus.COMPLETE,
        MessageStatus.FAILED,
        MessageStatus.COMPLETE,
        MessageStatus.STREAMING,
    ]
    assert saved[1].error == chat_service.INTERRUPTED_ERROR
    assert saved[1].updated_at >= before  # failed just now, not left as it was
    assert saved[1].id == stuck.assistant_message_id and saved[1].content == ""
    assert turn.user_position == 2
    # The failed reply said nothing, so the model is not shown it.
    assert [m.content for _, m in turn.history] == ["First"]


async def test_a_retry_older_than_the_summary_is_still_not_duplicated(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    first = await _send_c1(db, user, session_id)
    await _answer(container, first)
    # The send is no longer among the messages a turn loads: the database's unique
    # constraint catches the duplicate, and the send is answered as a retry.
    await db.exec(
        update(ChatSession)
        .where(col(ChatSession.id) == session_id)
        .values(summarized_message_count=2)
    )
    await db.commit()
    db.expunge_all()

    again = await _send_c1(db, user, session_id)

    assert again.user_message.id == first.user_message.id
    assert again.replay is not None and again.replay.content == "An answer."
    assert len(await _messages(db, session_id)) == 2


async def test_another_users_session_is_not_found_and_nothing_is_saved(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    owner, other = await make_user(db), await make_user(db)
    session_id = await _session(db, owner)
    with pytest.raises(NotFoundError) as refused:
        await chat_service.start_turn(db, actor=other, session_id=session_id, content="Hello")
    assert refused.value.public_message == conversations.SESSION_NOT_FOUND
    await db.rollback()
    assert await _messages(db, session_id) == []


async def test_a_send_while_a_reply_is_written_is_refused_and_writes_nothing(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user, session_id, first = await _first_send(db)
    db.expunge_all()
    session = await db.get(ChatSession, session_id)
    assert session is not None
    last_message_at = session.last_message_at
    db.expunge_all()

    with pytest.raises(ConflictError):
        await chat_service.start_turn(db, actor=user, session_id=session_id, content="Second")
    await db.rollback()

    saved = await _messages(db, session_id)
    assert [(m.content, m.status) for m in saved] == [
        ("First", MessageStatus.COMPLETE),
        ("", MessageStatus.STREAMING),  # the reply being written is left alone
    ]
    session = await db.get(ChatSession, session_id)
    assert session is not None and session.last_message_at == last_message_at
    # Once the reply is saved, the next send goes through.
    db.expunge_all()
    await _answer(container, first)
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Second")
    assert turn.user_position == 2
    assert [m.content for _, m in turn.history] == ["First", "An answer."]


async def test_a_duplicate_send_racing_its_original_is_answered_as_a_retry(
    db: AsyncSession, container: FakeProvidersContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    first = await _send_c1(db, user, session_id)
    await _answer(container, first)
    db.expunge_all()
    answered = await db.get(ChatSession, session_id)
    assert answered is not None
    last_message_at = answered.last_message_at
    db.expunge_all()
    # The duplicate read the session before the original was committed: it sees no
    # messages, so only the database's unique constraint can catch it.
    read = chat_service._turn_context

    async def before_the_original(
        db: AsyncSession, *, actor_id: uuid.UUID, session_id: uuid.UUID
    ) -> tuple[object, list[object]]:
        session, _ = await read(db, actor_id=actor_id, session_id=session_id)
        return session, []

    with monkeypatch.context() as patched:
        patched.setattr(chat_service, "_turn_context", before_the_original)
        again = await _send_c1(db, user, session_id)

    assert again.user_message == first.user_message
    assert again.replay is not None and again.replay.content == "An answer."
    assert len(await _messages(db, session_id)) == 2
    session = await db.get(ChatSession, session_id)  # its writes were all rolled back
    assert session is not None and session.last_message_at == last_message_at
    # The session is usable after the rolled-back insert.
    turn = await chat_service.start_turn(
        db, actor=user, session_id=session_id, content="And then?", client_message_id="c-2"
    )
    assert turn.user_position == 2 and turn.replay is None
    assert [m.content for m in await _messages(db, session_id)] == [
        "Hi",
        "An answer.",
        "And then?",
        "",
    ]


async def test_a_named_session_keeps_its_name_and_is_marked_active(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    await conversations.rename_session(db, actor=user, session_id=session_id, title="On justice")
    db.expunge_all()
    before = utcnow()

    await chat_service.start_turn(db, actor=user, session_id=session_id, content="Hello")

    db.expunge_all()
    session = await db.get(ChatSession, session_id)
    assert session is not None and session.title == "On justice"
    assert session.last_message_at is not None and session.last_message_at >= before
    assert session.updated_at == session.last_message_at


async def test_a_missing_session_is_not_found_like_another_users(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    with pytest.raises(NotFoundError) as missing:
        await chat_service.start_turn(db, actor=user, session_id=uuid.uuid4(), content="Hello")
    assert missing.value.public_message == conversations.SESSION_NOT_FOUND


async def test_a_retry_while_its_reply_is_written_is_refused_and_a_stale_one_is_answered(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    await _send_c1(db, user, session_id)
    db.expunge_all()
    # Retried while the reply is being written: refused, not replayed as an empty reply.
    with pytest.raises(ConflictError):
        await _send_c1(db, user, session_id)
    await db.rollback()

    # The reply was left streaming, without a word, by a crash: the retry answers it,
    # in the same row (nothing is duplicated).
    await db.exec(
        update(ChatMessage)
        .where(col(ChatMessage.session_id) == session_id)
        .values(updated_at=utcnow() - timedelta(seconds=chat_service.STALE_REPLY_SECONDS + 1))
    )
    await db.commit()
    db.expunge_all()
    before = await _messages(db, session_id)
    retried = await _send_c1(db, user, session_id)
    assert retried.replay is None and retried.assistant_message_id == before[1].id
    saved = await _messages(db, session_id)
    assert [(m.role, m.status) for m in saved] == [
        (MessageRole.USER, MessageStatus.COMPLETE),
        (MessageRole.ASSISTANT, MessageStatus.STREAMING),
    ]


async def test_two_sends_at_once_to_one_session_let_one_through(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real, separate transactions: the second send waits for the first to commit."""
    async with AsyncSession(engine, expire_on_commit=False) as db:
        user = await make_user(db)
        session_id = await _session(db, user)
    read = chat_service._turn_context

    async def slow_read(
        db: AsyncSession, *, actor_id: uuid.UUID, session_id: uuid.UUID
    ) -> tuple[object, list[object]]:
        found = await read(db, actor_id=actor_id, session_id=session_id)
        await asyncio.sleep(0.3)  # both requests have read, if nothing holds the second
        return found

    monkeypatch.setattr(chat_service, "_turn_context", slow_read)

    async def send(text: str) -> object:
        async with AsyncSession(engine, expire_on_commit=False) as db:
            actor = await db.get(User, user.id)
            assert actor is not None
            try:
                return await chat_service.start_turn(
                    db, actor=actor, session_id=session_id, content=text
                )
            except ConflictError as refused:
                return refused

    try:
        outcomes = await asyncio.gather(send("First"), send("Second"))
        assert sorted(type(o).__name__ for o in outcomes) == ["ConflictError", "PreparedTurn"]
        async with AsyncSession(engine) as db:
            saved = await _messages(db, session_id)
        assert [(m.role, m.status) for m in saved] == [
            (MessageRole.USER, MessageStatus.COMPLETE),
            (MessageRole.ASSISTANT, MessageStatus.STREAMING),
        ]
    finally:
        async with AsyncSession(engine) as db:
            await db.delete(await db.get(User, user.id))
            await db.commit()
