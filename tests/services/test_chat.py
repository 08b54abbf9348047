"""One chat turn against the fake model on a real database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import ConflictError, InvalidInputError, NotFoundError
from histora.models import ChatMessage, ChatSession, MessageStatus, UsageEvent, UsageKind, User
from histora.models.chat import ChatMessagePublic
from histora.providers.chat_types import Completion, ModelAttempt, ModelSpec, ModelUnavailableError
from histora.providers.fakes import FakeChatModel
from histora.services import chat as chat_service
from histora.services import conversations
from histora.settings import STALE_REPLY_SECONDS, TURN_MARGIN_SECONDS
from tests.conftest import FakeProvidersContainer
from tests.factories import make_user


@pytest.fixture(autouse=True)
def _stop_asked_only_per_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that count Stop checks count one per piece of reply: no extra check while
    a slow machine waits for the first piece."""
    monkeypatch.setattr(chat_service, "STOP_POLL_SECONDS", 60.0)


async def _session(db: AsyncSession, user: User, character_id: str = "socrates") -> uuid.UUID:
    return (await conversations.create_session(db, actor=user, character_id=character_id)).id


async def _run(
    container: FakeProvidersContainer,
    turn: chat_service.PreparedTurn,
    model: FakeChatModel,
    **kwargs: object,
) -> tuple[str, chat_service.TurnEvent]:
    text, last = "", None
    async for event in chat_service.stream_turn(
        container.db_session,
        turn=turn,
        chat_model=model,
        **kwargs,  # type: ignore[arg-type]
    ):
        if isinstance(event, chat_service.ReplyDelta):
            text += event.text
        else:
            last = event
    assert last is not None
    return text, last


def _asking(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """``should_stop`` as the chat page gives it (asynchronous), answering ``check``."""

    async def should_stop() -> bool:
        return check()

    return should_stop


async def _messages(db: AsyncSession, session_id: uuid.UUID) -> list[ChatMessage]:
    db.expunge_all()
    rows = await db.exec(
        select(ChatMessage)
        .where(ChatMessage.session_id == session_id)
        .order_by(ChatMessage.created_at)  # type: ignore[arg-type]
    )
    return list(rows.all())


async def test_turn_streams_and_saves_reply(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    model = FakeChatModel(reply="Know thyself, friend.", chunk_size=3)
    turn = await chat_service.start_turn(
        db, actor=user, session_id=session_id, content="Who are you?"
    )
    text, done = await _run(container, turn, model)

    assert text == "Know thyself, friend."
    assert isinstance(done, chat_service.ReplyDone)
    assert done.message.status == MessageStatus.COMPLETE and done.message.content == text
    saved = await _messages(db, session_id)
    assert [(m.role, m.status) for m in saved] == [("user", "complete"), ("assistant", "complete")]
    # No provider usage: tokens are estimated, never zero for a real prompt.
    assert saved[1].prompt_tokens > 0 and saved[1].completion_tokens > 0
    prompt = model.calls[0]
    assert prompt[0].role == "system" and "I am Socrates" in prompt[0].content
    assert prompt[-1].content == "Who are you?"


async def test_provider_token_counts_are_stored(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    model = FakeChatModel(reply="Yes.", prompt_tokens=321, completion_tokens=7)
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Well?")
    _, done = await _run(container, turn, model)
    assert (done.message.prompt_tokens, done.message.completion_tokens) == (321, 7)
    usage = (
        await db.exec(select(UsageEvent).where(UsageEvent.message_id == done.message.id))
    ).one()
    assert (usage.kind, usage.prompt_tokens, usage.completion_tokens) == (UsageKind.CHAT, 321, 7)
    assert usage.user_id == user.id


async def _saved_reply(
    db: AsyncSession,
    container: FakeProvidersContainer,
    user: User,
    session_id: uuid.UUID,
    content: str,
    model: FakeChatModel,
    **kwargs: object,
) -> ChatMessagePublic:
    """Send ``content`` and stream the reply to its end; the reply as saved."""
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content=content)
    _, done = await _run(container, turn, model, **kwargs)
    assert isinstance(done, chat_service.ReplyDone)
    return done.message


async def test_a_reply_cut_off_at_the_length_limit_is_saved_as_cut_short(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)

    async def reply(content: str, model: FakeChatModel, **kwargs: object) -> ChatMessagePublic:
        return await _saved_reply(db, container, user, session_id, content, model, **kwargs)

    cut = FakeChatModel(reply="Virtue, my friend, is a kind of", finish_reason="length")
    done = await reply("Virtue?", cut)
    assert done.status == MessageStatus.COMPLETE and done.cut_short
    done = await reply("Go on.", FakeChatModel(reply="knowledge."))
    assert not done.cut_short
    saved = await _messages(db, session_id)
    assert [(m.role, m.cut_short) for m in saved] == [
        ("user", False),
        ("assistant", True),
        ("user", False),
        ("assistant", False),
    ]
    # Stopped before the model's end: whatever the model would have said, it is the
    # user who cut it off.
    cut = FakeChatModel(reply="a" * 40, finish_reason="length")
    done = await reply("More?", cut, should_stop=_asking(lambda: True))
    assert done.status == MessageStatus.STOPPED and not done.cut_short
    # Stop pressed as the model's end arrived: the reply was whole, and cut short.
    asked: list[int] = []
    cut = FakeChatModel(reply="abc", chunk_size=3, finish_reason="length")
    # From the end event on:
    done = await reply("And?", cut, should_stop=_asking(lambda: len(asked.append(1) or asked) > 1))
    assert done.status == MessageStatus.COMPLETE and done.cut_short


async def test_a_retried_send_replays_a_cut_short_reply_and_regenerating_it_is_whole(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    cut = FakeChatModel(reply="It begins", finish_reason="length")
    send = {"actor": user, "session_id": session_id, "content": "Tell", "client_message_id": "c1"}
    _, first = await _run(container, await chat_service.start_turn(db, **send), cut)
    _, replayed = await _run(container, await chat_service.start_turn(db, **send), cut)
    assert len(cut.calls) == 1  # the retry asked no model
    assert isinstance(replayed, chat_service.ReplyDone)
    assert replayed.message.id == first.message.id and replayed.message.cut_short
    await db.refresh(user)  # the retry rolled back its transaction, expiring the user
    turn = await chat_service.start_regenerate(db, actor=user, session_id=session_id)
    _, again = await _run(container, turn, FakeChatModel(reply="It begins and ends."))
    assert not again.message.cut_short
    assert [m.cut_short for m in await _messages(db, session_id)] == [False, False]


async def test_user_message_is_saved_before_the_model_fails(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Hello?")
    assert (await _messages(db, session_id))[0].content == "Hello?"
    _, failed = await _run(container, turn, FakeChatModel(fail_before_first_token=True))
    assert isinstance(failed, chat_service.ReplyFailed)
    assert failed.code == "model_unavailable"
    saved = await _messages(db, session_id)
    assert [m.status for m in saved] == ["complete", "failed"]
    assert saved[1].error


async def test_failure_mid_reply_keeps_the_partial_text(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    model = FakeChatModel(reply="The unexamined life is not worth living.", fail_after_chars=12)
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Advice?")
    text, failed = await _run(container, turn, model)
    assert isinstance(failed, chat_service.ReplyFailed)
    assert text == "The unexamin"
    assert failed.message.content == text and failed.message.status == MessageStatus.FAILED


async def test_stop_saves_a_stopped_partial_reply(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    model = FakeChatModel(reply="a" * 100, chunk_size=10)
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Go on")
    seen: list[str] = []
    text, done = await _run(
        container, turn, model, should_stop=_asking(lambda: len(seen.append("x") or seen) >= 3)
    )
    assert isinstance(done, chat_service.ReplyDone)
    assert done.message.status == MessageStatus.STOPPED
    assert text == "a" * 30 and done.message.content == text


async def test_stop_is_honoured_while_the_first_words_are_awaited(
    db: AsyncSession, container: FakeProvidersContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long prompt can keep a reply's first words waiting for seconds: Stop ends it."""
    monkeypatch.setattr(chat_service, "STOP_POLL_SECONDS", 0.01)
    user = await make_user(db)
    session_id = await _session(db, user)
    slow = FakeChatModel(reply="Too late.", delay_seconds=30)
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Hm?")
    asked: list[int] = []
    async with asyncio.timeout(10):  # the first word would take 30 s
        text, done = await _run(
            container, turn, slow, should_stop=_asking(lambda: len(asked.append(1) or asked) > 3)
        )
    assert isinstance(done, chat_service.ReplyDone) and text == ""
    assert (done.message.status, done.message.content) == (MessageStatus.STOPPED, "")
    assert len(slow.calls) == 1
    # The conversation goes on.
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Now?")
    _, done = await _run(container, turn, FakeChatModel(reply="Yes."))
    assert isinstance(done, chat_service.ReplyDone) and done.message.content == "Yes."


async def test_a_turn_that_waits_too_long_for_first_words_times_out_and_is_saved_failed(
    db: AsyncSession, container: FakeProvidersContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However the chain's models and retries add up, a turn stops waiting in time to be
    saved before its reply would be taken for one left by a crash."""
    slow = FakeChatModel(reply="Too late.", delay_seconds=30)
    budget = chat_service._first_words_budget(slow)
    longest = max(spec.total_timeout_seconds for spec in slow.models)
    assert budget + longest + TURN_MARGIN_SECONDS == STALE_REPLY_SECONDS
    monkeypatch.setattr(chat_service, "_first_words_budget", lambda model: 0.2)
    user = await make_user(db)
    session_id = await _session(db, user)
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Hm?")

    async with asyncio.timeout(10):  # the first word would take 30 s
        _, failed = await _run(container, turn, slow)

    assert isinstance(failed, chat_service.ReplyFailed) and failed.code == "model_timed_out"
    assert failed.message.status == MessageStatus.FAILED
    # The conversation goes on.
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Now?")
    _, done = await _run(container, turn, FakeChatModel(reply="Yes."))
    assert isinstance(done, chat_service.ReplyDone)


async def test_a_reply_broken_by_something_else_is_saved_failed_not_streaming(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    """A failure that is not the model's (here the page's Stop check) must not leave the
    reply as still being written: that would hold the conversation for ten minutes."""
    user = await make_user(db)
    session_id = await _session(db, user)
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Hi")

    async def broken() -> bool:
        raise RuntimeError("state unavailable")

    with pytest.raises(RuntimeError):
        await _run(container, turn, FakeChatModel(reply="abc", chunk_size=1), should_stop=broken)
    reply = (await _messages(db, session_id))[-1]
    await db.refresh(reply)
    assert (reply.status, reply.content) == (MessageStatus.FAILED, "a")
    assert reply.error == chat_service.INTERRUPTED_ERROR
    # The conversation goes on at once.
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Hm?")
    assert turn.assistant_message_id != reply.id


async def test_client_going_away_saves_what_was_streamed(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Hi")
    stream = chat_service.stream_turn(
        container.db_session, turn=turn, chat_model=FakeChatModel(reply="abcdefgh", chunk_size=2)
    )
    assert await anext(stream) == chat_service.ReplySources([])
    first = await anext(stream)
    assert first == chat_service.ReplyDelta("ab")
    await stream.aclose()
    saved = await _messages(db, session_id)
    assert (saved[1].status, saved[1].content) == (MessageStatus.STOPPED, "ab")


async def test_retried_send_is_not_duplicated(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    model = FakeChatModel(reply="Once only.")
    first = await chat_service.start_turn(
        db, actor=user, session_id=session_id, content="Hi", client_message_id="c-1"
    )
    await _run(container, first, model)
    again = await chat_service.start_turn(
        db, actor=user, session_id=session_id, content="Hi", client_message_id="c-1"
    )
    text, done = await _run(container, again, model)
    assert text == "Once only." and isinstance(done, chat_service.ReplyDone)
    assert again.user_message.id == first.user_message.id
    assert len(model.calls) == 1
    assert len(await _messages(db, session_id)) == 2


async def test_send_while_replying_is_refused(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    await chat_service.start_turn(db, actor=user, session_id=session_id, content="First")
    with pytest.raises(ConflictError):
        await chat_service.start_turn(db, actor=user, session_id=session_id, content="Second")


async def test_regenerate_replaces_the_last_reply(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Q")
    await _run(container, turn, FakeChatModel(reply="First answer."))
    again = await chat_service.start_regenerate(db, actor=user, session_id=session_id)
    _, done = await _run(container, again, FakeChatModel(reply="Second answer."))
    saved = await _messages(db, session_id)
    assert [m.content for m in saved] == ["Q", "Second answer."]
    assert done.message.content == "Second answer."


async def _regenerating(
    db: AsyncSession, container: FakeProvidersContainer, user: User
) -> tuple[uuid.UUID, ChatMessagePublic, chat_service.PreparedTurn]:
    """A conversation with one complete reply, and a regenerate of it begun."""
    session_id = await _session(db, user)
    earlier = await _saved_reply(
        db, container, user, session_id, "Q", FakeChatModel(reply="A reply worth keeping.")
    )
    turn = await chat_service.start_regenerate(db, actor=user, session_id=session_id)
    return session_id, earlier, turn


async def _usage_of(db: AsyncSession, message_id: uuid.UUID) -> list[UsageEvent]:
    rows = await db.exec(select(UsageEvent).where(UsageEvent.message_id == message_id))
    return list(rows.all())


async def test_a_regenerate_that_fails_gives_the_earlier_reply_back(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    for model in (
        FakeChatModel(fail_before_first_token=True),
        FakeChatModel(reply="A new answer that breaks off", fail_after_chars=8),
    ):
        session_id, earlier, turn = await _regenerating(db, container, user)
        # Meanwhile the row keeps its words: a crash now would not leave it empty.
        during = await _messages(db, session_id)
        assert (during[1].status, during[1].content) == ("streaming", earlier.content)

        _, failed = await _run(container, turn, model)

        assert isinstance(failed, chat_service.ReplyFailed)
        assert failed.public_message.endswith("The earlier reply is kept.")
        assert failed.message.model_dump(exclude={"updated_at"}) == earlier.model_dump(
            exclude={"updated_at"}
        )
        saved = await _messages(db, session_id)
        assert [(m.id, m.content, m.status) for m in saved[1:]] == [
            (earlier.id, "A reply worth keeping.", MessageStatus.COMPLETE)
        ]
        # Tokens the failed answer used are still counted.
        assert len(await _usage_of(db, earlier.id)) == 2


async def test_a_regenerate_stopped_before_its_first_words_gives_the_earlier_reply_back(
    db: AsyncSession, container: FakeProvidersContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_service, "STOP_POLL_SECONDS", 0.01)
    user = await make_user(db)
    session_id, earlier, turn = await _regenerating(db, container, user)
    slow = FakeChatModel(reply="Too late.", delay_seconds=30)

    async with asyncio.timeout(10):  # the first word would take 30 s
        _, done = await _run(container, turn, slow, should_stop=_asking(lambda: True))

    assert isinstance(done, chat_service.ReplyDone) and done.earlier_kept
    assert (done.message.id, done.message.content) == (earlier.id, earlier.content)
    assert done.message.status == MessageStatus.COMPLETE
    saved = await _messages(db, session_id)
    assert [(m.content, m.status) for m in saved] == [
        ("Q", MessageStatus.COMPLETE),
        ("A reply worth keeping.", MessageStatus.COMPLETE),
    ]


async def test_a_regenerate_stopped_while_writing_gives_the_earlier_reply_back(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id, earlier, turn = await _regenerating(db, container, user)
    model = FakeChatModel(reply="A new answer, stopped early.", chunk_size=6)

    text, done = await _run(container, turn, model, should_stop=_asking(lambda: True))

    assert text == "A new "  # shown as it came, then the Stop
    assert isinstance(done, chat_service.ReplyDone) and done.earlier_kept
    assert (done.message.content, done.message.status) == (earlier.content, "complete")
    assert [m.content for m in await _messages(db, session_id)] == ["Q", earlier.content]


async def test_a_regenerate_that_says_nothing_gives_the_earlier_reply_back(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    # A model can end a stream without a word (a filter, or a reasoning model that spent
    # its tokens thinking): that is no answer to keep.
    user = await make_user(db)
    for model in (FakeChatModel(reply=""), FakeChatModel(reply="", finish_reason="length")):
        session_id, earlier, turn = await _regenerating(db, container, user)
        _, done = await _run(container, turn, model)
        assert isinstance(done, chat_service.ReplyDone) and done.earlier_kept
        assert [m.content for m in await _messages(db, session_id)] == ["Q", earlier.content]


async def test_a_retry_of_a_reply_that_failed_wordless_keeps_what_it_writes_when_stopped(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    # The page's Retry is a regenerate; with no earlier words, nothing is given back.
    user = await make_user(db)
    session_id = await _session(db, user)
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="Q")
    await _run(container, turn, FakeChatModel(fail_before_first_token=True))
    retry = await chat_service.start_regenerate(db, actor=user, session_id=session_id)
    model = FakeChatModel(reply="A new answer, stopped early.", chunk_size=6)

    text, done = await _run(container, retry, model, should_stop=_asking(lambda: True))

    assert isinstance(done, chat_service.ReplyDone) and not done.earlier_kept
    assert (done.message.content, done.message.status) == (text, MessageStatus.STOPPED)


async def test_a_reply_changed_since_it_was_read_is_not_taken_again(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    """Two regenerates at once: the one that reads the reply after the other took it,
    but writes after, must not take it too (on PostgreSQL reading took no lock)."""
    user = await make_user(db)
    session_id = await _session(db, user)
    await _saved_reply(db, container, user, session_id, "Q", FakeChatModel(reply="First."))
    seen = (await _messages(db, session_id))[1]  # read by the second regenerate
    first = await chat_service.start_regenerate(db, actor=user, session_id=session_id)
    await _run(container, first, FakeChatModel(reply="Second."))  # the first one finished

    with pytest.raises(ConflictError):
        await chat_service._answer_again(db, seen)
    assert [m.content for m in await _messages(db, session_id)] == ["Q", "Second."]


async def test_a_whole_regenerated_reply_replaces_the_earlier_in_its_row(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    for model in (
        FakeChatModel(reply="A better answer."),
        FakeChatModel(reply="A longer answer", finish_reason="length"),  # cut short: whole
    ):
        session_id, earlier, turn = await _regenerating(db, container, user)
        text, done = await _run(container, turn, model)
        assert isinstance(done, chat_service.ReplyDone) and not done.earlier_kept
        assert (done.message.id, done.message.content) == (earlier.id, text)
        assert [m.content for m in await _messages(db, session_id)] == ["Q", text]


async def test_a_retried_send_whose_reply_said_nothing_is_answered_not_replayed(
    db: AsyncSession, container: FakeProvidersContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that went away before the first words, then sends again with the same
    client id, gets an answer; one whose reply had begun gets it as it was saved."""
    monkeypatch.setattr(chat_service, "STOP_POLL_SECONDS", 0.01)
    user = await make_user(db)
    session_id = await _session(db, user)
    send = {"actor": user, "session_id": session_id, "content": "Why?", "client_message_id": "c"}
    slow = FakeChatModel(reply="Too late.", delay_seconds=30)
    async with asyncio.timeout(10):
        _, gone = await _run(
            container,
            await chat_service.start_turn(db, **send),
            slow,
            should_stop=_asking(lambda: True),
        )
    assert (gone.message.status, gone.message.content) == (MessageStatus.STOPPED, "")

    await db.refresh(user)
    retry = await chat_service.start_turn(db, **send)
    assert retry.replay is None and retry.assistant_message_id == gone.message.id
    _, answered = await _run(container, retry, FakeChatModel(reply="Because.", chunk_size=3))
    assert (answered.message.status, answered.message.content) == ("complete", "Because.")

    await db.refresh(user)
    again = await chat_service.start_turn(db, **send)  # now it has words: replayed
    assert again.replay is not None and again.replay.content == "Because."
    assert [m.content for m in await _messages(db, session_id)] == ["Why?", "Because."]


async def test_regenerate_without_a_reply_is_invalid(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    with pytest.raises(InvalidInputError):
        await chat_service.start_regenerate(db, actor=user, session_id=session_id)


@pytest.mark.parametrize("content", ["", "   ", "x" * (chat_service.MAX_MESSAGE_CHARS + 1)])
async def test_bad_message_is_invalid(db: AsyncSession, content: str) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    with pytest.raises(InvalidInputError):
        await chat_service.start_turn(db, actor=user, session_id=session_id, content=content)


async def test_another_users_session_is_not_found(db: AsyncSession) -> None:
    owner, stranger = await make_user(db), await make_user(db)
    session_id = await _session(db, owner)
    with pytest.raises(NotFoundError):
        await chat_service.start_turn(db, actor=stranger, session_id=session_id, content="Hi")
    with pytest.raises(NotFoundError):
        await conversations.list_messages(db, actor=stranger, session_id=session_id)
    with pytest.raises(NotFoundError):
        await conversations.latest_messages(db, actor=stranger, session_id=session_id, limit=5)
    with pytest.raises(NotFoundError):
        await conversations.delete_session(db, actor=stranger, session_id=session_id)


async def test_first_message_names_the_session(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    await chat_service.start_turn(db, actor=user, session_id=session_id, content="What is piety?")
    page = await conversations.list_sessions(db, actor=user)
    assert page.items[0].title == "What is piety?"
    assert page.items[0].preview == ""  # the reply placeholder is the newest message


async def test_conversations_are_listed_by_their_last_message_not_their_last_change(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    quiet = await _session(db, user)
    older, newer = await _session(db, user), await _session(db, user)
    for session_id in (older, newer):
        await chat_service.start_turn(db, actor=user, session_id=session_id, content="Hello")

    async def order() -> list[uuid.UUID]:
        return [s.id for s in (await conversations.list_sessions(db, actor=user)).items]

    assert await order() == [newer, older, quiet]
    await conversations.rename_session(db, actor=user, session_id=quiet, title="On piety")
    await conversations.set_archived(db, actor=user, session_id=older, archived=True)
    await conversations.set_archived(db, actor=user, session_id=older, archived=False)
    assert await order() == [newer, older, quiet]
    await chat_service.start_turn(db, actor=user, session_id=quiet, content="Still there?")
    assert await order() == [quiet, newer, older]


async def test_the_chat_page_list_holds_only_the_actors_open_conversations_with_the_figure(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user, stranger = await make_user(db), await make_user(db)
    first, second = await _session(db, user), await _session(db, user)
    archived = await _session(db, user)
    await conversations.set_archived(db, actor=user, session_id=archived, archived=True)
    await conversations.create_session(db, actor=user, character_id="marie-curie")
    await conversations.create_session(db, actor=stranger, character_id="socrates")
    await chat_service.start_turn(db, actor=user, session_id=first, content="On justice")

    links = await conversations.list_session_titles(db, actor=user, character_id="socrates")

    assert [(link.id, link.title) for link in links] == [
        (str(first), "On justice"),
        (str(second), "New conversation"),
    ]
    full = await conversations.list_sessions(db, actor=user, character_id="socrates")
    assert [str(s.id) for s in full.items] == [link.id for link in links]  # the same order


async def test_a_long_conversation_opens_on_its_newest_messages(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    for i in range(3):
        turn = await chat_service.start_turn(
            db, actor=user, session_id=session_id, content=f"Question {i}"
        )
        await _run(container, turn, FakeChatModel(reply=f"Answer {i}"))

    shown = await conversations.latest_messages(db, actor=user, session_id=session_id, limit=3)

    assert [m.content for m in shown] == ["Answer 1", "Question 2", "Answer 2"]


async def _long_conversation(
    db: AsyncSession, container: FakeProvidersContainer, user: User
) -> uuid.UUID:
    """Eight long turns on a roomy model: nothing is folded yet, but a small one would."""
    session_id = await _session(db, user)
    for i in range(8):
        turn = await chat_service.start_turn(
            db, actor=user, session_id=session_id, content=f"Question {i} " + "q" * 300
        )
        await _run(container, turn, FakeChatModel(reply=f"Answer {i} " + "a" * 300))
    return session_id


async def test_long_conversations_fold_into_a_summary(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _long_conversation(db, container, user)
    small = [ModelSpec(name="tiny", max_tokens=100, context_window=1100)]
    model = FakeChatModel(
        replies=["SUMMARY: they discussed many questions.", "Final answer."], models=small
    )
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="And now?")
    text, _ = await _run(container, turn, model)

    assert text == "Final answer."
    summary_call, answer_call = model.calls[-2], model.calls[-1]
    assert "Question 0" in summary_call[-1].content
    assert "SUMMARY: they discussed" in answer_call[0].content
    assert not any("Question 0" in m.content for m in answer_call)
    db.expunge_all()
    session = await db.get(ChatSession, session_id)
    assert session is not None and session.summary.startswith("SUMMARY")
    assert session.summarized_message_count > 0
    summaries = (
        await db.exec(select(UsageEvent).where(UsageEvent.kind == UsageKind.SUMMARY))
    ).all()
    assert len(summaries) >= 1


class _SlowSummaries(FakeChatModel):
    """Takes its time over a summary (a long conversation on a slow model)."""

    async def complete(self, messages: object, *, max_tokens: int | None = None) -> Completion:
        self.calls.append([])
        await asyncio.sleep(30)
        raise AssertionError("the summary was waited for to the end")


async def test_stop_is_honoured_while_the_summary_is_written_and_nothing_half_saved(
    db: AsyncSession, container: FakeProvidersContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_service, "STOP_POLL_SECONDS", 0.01)
    user = await make_user(db)
    session_id = await _long_conversation(db, container, user)
    small = [ModelSpec(name="tiny", max_tokens=100, context_window=1100)]
    slow = _SlowSummaries(reply="Never sent.", models=small)
    turn = await chat_service.start_turn(db, actor=user, session_id=session_id, content="And now?")
    asked: list[int] = []
    async with asyncio.timeout(10):  # the summary would take 30 s
        text, done = await _run(
            container, turn, slow, should_stop=_asking(lambda: len(asked.append(1) or asked) > 3)
        )

    assert isinstance(done, chat_service.ReplyDone) and text == ""
    assert (done.message.status, done.message.content) == (MessageStatus.STOPPED, "")
    assert len(slow.calls) == 1  # the summary only: the reply was never asked for
    db.expunge_all()
    session = await db.get(ChatSession, session_id)
    assert session is not None and (session.summary, session.summarized_message_count) == ("", 0)
    summaries = select(UsageEvent).where(UsageEvent.kind == UsageKind.SUMMARY)
    assert (await db.exec(summaries)).all() == []


class _NoSummaries(FakeChatModel):
    """Answers, but cannot write summaries."""

    async def complete(self, messages: object, *, max_tokens: int | None = None) -> Completion:
        raise ModelUnavailableError([ModelAttempt(model="tiny", error="down")])


async def test_summary_failure_falls_back_without_failing_the_turn(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    session_id = await _session(db, user)
    small = [ModelSpec(name="tiny", max_tokens=100, context_window=900)]
    model = _NoSummaries(reply="ok " + "a" * 300, models=small)
    for i in range(6):
        turn = await chat_service.start_turn(
            db, actor=user, session_id=session_id, content=f"Question {i} " + "q" * 300
        )
        _, done = await _run(container, turn, model)
        assert isinstance(done, chat_service.ReplyDone)
    db.expunge_all()
    session = await db.get(ChatSession, session_id)
    assert session is not None and "Earlier the visitor asked about" in session.summary
