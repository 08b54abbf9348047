"""One chat turn, shared by the Reflex page and the REST API.

``start_turn`` authorizes, validates and persists the user message (and a reply
placeholder) before any model call, raising domain errors before a byte streams.
``stream_turn`` yields reply events and always persists the reply: complete,
stopped (the user pressed Stop or the client went away) or failed, keeping the
partial text. Database sessions stay short and never span the model call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar

import structlog
from sqlalchemy import and_, bindparam, case, func, insert, update
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import ConflictError, InvalidInputError, NotFoundError, ProviderError
from histora.models import (
    Character,
    ChatMessage,
    ChatSession,
    Document,
    MessageRole,
    MessageStatus,
    UsageEvent,
    UsageKind,
    User,
)
from histora.models.base import new_id, utcnow
from histora.models.chat import DEFAULT_TITLE, ChatMessagePublic
from histora.models.documents import CitationPublic
from histora.providers.chat_models import ChatModel
from histora.providers.chat_types import (
    ModelTimedOutError,
    PromptMessage,
    StreamDelta,
    StreamEnd,
)
from histora.services import conversations, prompting, retrieval
from histora.services import search as search_service
from histora.services.rate_limits import RateLimiter
from histora.services.search import Retriever
from histora.services.text_input import refuse_nul
from histora.settings import TURN_MARGIN_SECONDS, Settings

log = structlog.get_logger(__name__)

MAX_MESSAGE_CHARS = 4000
CLIENT_ID_MAX_LENGTH = 64
INTERRUPTED_ERROR = "The reply was interrupted before it finished."
# A failed reply's code when it ran out of time: asking again as it was would too.
TIMED_OUT = ModelTimedOutError.code
STALE_REPLY_SECONDS = conversations.STALE_REPLY_SECONDS
# At most this share of the model's context goes to retrieved passages.
SOURCES_SHARE_OF_CONTEXT = 0.35

_CHARACTER_GONE = "This historical figure is no longer available."
_REPLYING = "A reply is still being written. Wait for it or stop it first."
_TICK = timedelta(microseconds=1)

OpenDb = Callable[[], AbstractAsyncContextManager[AsyncSession]]


@dataclass(frozen=True)
class PreparedTurn:
    """Everything ``stream_turn`` needs, loaded while the database session was open."""

    actor_id: uuid.UUID
    session_id: uuid.UUID
    character_id: str
    voice: prompting.CharacterVoice
    user_message: ChatMessagePublic
    assistant_message_id: uuid.UUID
    summary: str
    # Earlier turns not yet folded into the summary, with their session positions.
    history: list[tuple[int, PromptMessage]] = field(default_factory=list)
    user_position: int = 0
    # Set when a retried send already has its reply: it is replayed, not regenerated.
    replay: ChatMessagePublic | None = None
    # A regenerated reply as it was: given back unless the new one is whole
    # (``_gives_back_earlier``).
    replaces: ChatMessagePublic | None = None
    # This turn, among those that write the same reply row (a regenerate, a retry).
    turn_id: uuid.UUID = field(default_factory=uuid.uuid4)
    # False when start_turn saw no ready sources for the character or session: the reply
    # then skips retrieval, and its own database round trips, on the way to the model.
    may_have_sources: bool = True


@dataclass(frozen=True)
class ReplySources:
    """The passages the reply may cite as [n]; always sent before the first delta."""

    citations: list[CitationPublic]


@dataclass(frozen=True)
class ReplyDelta:
    text: str


@dataclass(frozen=True)
class ReplyDone:
    message: ChatMessagePublic
    # A regenerate stopped before it finished: ``message`` is the earlier reply, kept.
    earlier_kept: bool = False


@dataclass(frozen=True)
class ReplyFailed:
    message: ChatMessagePublic
    code: str
    public_message: str


TurnEvent = ReplySources | ReplyDelta | ReplyDone | ReplyFailed


async def check_send_rate(limiter: RateLimiter, *, actor: User, settings: Settings) -> None:
    """Sends per user, the same limit for the web page and the API."""
    await limiter.hit(settings.chat_rate_limit, "chat-user", str(actor.id))


def validate_content(content: str) -> str:
    """The message to send, trimmed; refuses an empty or too long one."""
    text = refuse_nul(content.strip(), what="A message")
    if not text:
        raise InvalidInputError("A message cannot be empty.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise InvalidInputError(
            f"A message is limited to {MAX_MESSAGE_CHARS:,} characters; this one has {len(text):,}."
        )
    return text


def _validate_client_id(client_message_id: str | None) -> str | None:
    if client_message_id is None:
        return None
    value = client_message_id.strip()
    if not value or len(value) > CLIENT_ID_MAX_LENGTH:
        raise InvalidInputError(
            f"client_message_id must be 1 to {CLIENT_ID_MAX_LENGTH} characters."
        )
    return value


async def _session_messages(db: AsyncSession, session_id: uuid.UUID) -> list[ChatMessage]:
    rows = await db.exec(
        select(ChatMessage)
        .where(ChatMessage.session_id == session_id)
        .order_by(col(ChatMessage.created_at), col(ChatMessage.id))
    )
    return list(rows.all())


class _RecentMessage(NamedTuple):
    """What a turn reads of a message not yet folded into the summary."""

    id: uuid.UUID
    role: MessageRole
    content: str
    status: MessageStatus
    client_message_id: str | None
    updated_at: datetime


@dataclass(frozen=True)
class _TurnSession:
    """What a turn reads of the actor's session and its character."""

    id: uuid.UUID
    character_id: str
    title: str
    summary: str
    summarized_message_count: int
    voice: prompting.CharacterVoice
    has_ready_sources: bool


# start_turn is on the path to the first token, so it reads and writes with Core
# statements on the session's connection: ORM entities, the unit of work's flush and
# even the ORM layer of ``db.exec`` cost more there than the queries themselves. The
# statements are built once with named parameters, so no call rebuilds them or keys them
# for the statement cache. (SQLAlchemy's select: SQLModel's types at most four columns.)

# The session's messages, numbered from 1 in session order.
_NUMBERED = (
    core_select(
        col(ChatMessage.id),
        col(ChatMessage.role),
        col(ChatMessage.content),
        col(ChatMessage.status),
        col(ChatMessage.client_message_id),
        col(ChatMessage.updated_at),
        func.row_number()
        .over(order_by=(col(ChatMessage.created_at), col(ChatMessage.id)))
        .label("number"),
    )
    .where(col(ChatMessage.session_id) == bindparam("session_id"))
    .subquery()
)
# What a turn reads of the session and its character, and whether retrieval would find
# any document for it (its character's or its own), from the one session row: the
# sources check runs once, not once per message.
_SESSION_ROW = (
    core_select(
        col(ChatSession.character_id),
        col(ChatSession.title),
        col(ChatSession.summary),
        col(ChatSession.summarized_message_count),
        col(Character.name),
        col(Character.system_prompt),
        col(Character.speaking_style),
        col(Character.knowledge_horizon_year),
        col(Character.era),
        select(Document.id)
        .where(
            retrieval.ready_in_scope(
                character_id=col(ChatSession.character_id), session_id=col(ChatSession.id)
            )
        )
        .exists()
        .label("has_ready_sources"),
    )
    .select_from(ChatSession)
    .outerjoin(Character, col(Character.id) == col(ChatSession.character_id))
    .where(
        col(ChatSession.id) == bindparam("session_id"),
        col(ChatSession.user_id) == bindparam("actor_id"),
    )
    .cte("turn_session")
)
# (Any: with the message columns a row has more columns than SQLAlchemy types;
# _turn_context gives the values types.)
_SESSION_COLUMNS: tuple[Any, ...] = tuple(_SESSION_ROW.c)
# All a turn reads, in one round trip: a row per message not folded into the summary,
# in order, each with the session's columns (one row with no message if there are none);
# no row for a missing session or another user's.
_TURN_CONTEXT = (
    core_select(*_SESSION_COLUMNS, *(_NUMBERED.c[name] for name in _RecentMessage._fields))
    .select_from(_SESSION_ROW)
    .outerjoin(_NUMBERED, _NUMBERED.c.number > _SESSION_ROW.c.summarized_message_count)
    .order_by(_NUMBERED.c.number)
)
# The actor's session is active just now (as conversations.touch), and named after its
# first question while it has the default title. start_turn runs this first: its row
# lock (SQLite: the write lock) makes a second send to the same session wait until this
# one commits, and then see its reply in flight.
_TOUCH = (
    update(ChatSession)
    .where(
        col(ChatSession.id) == bindparam("session_id"),
        col(ChatSession.user_id) == bindparam("actor_id"),
    )
    .values(
        updated_at=bindparam("touched"),
        last_message_at=bindparam("touched"),
        title=case(
            (
                and_(
                    col(ChatSession.summarized_message_count) == 0,
                    col(ChatSession.title) == DEFAULT_TITLE,
                ),
                bindparam("new_title"),
            ),
            else_=col(ChatSession.title),
        ),
    )
)
_FAIL_STALE = (
    update(ChatMessage)
    .where(
        col(ChatMessage.id).in_(bindparam("stale", expanding=True)),
        col(ChatMessage.status) == MessageStatus.STREAMING,
    )
    .values(status=MessageStatus.FAILED, error=INTERRUPTED_ERROR)
)
_INSERT_MESSAGES = insert(ChatMessage)


async def _turn_context(
    db: AsyncSession, *, actor_id: uuid.UUID, session_id: uuid.UUID
) -> tuple[_TurnSession, list[_RecentMessage]]:
    """The actor's session with its character's voice and whether it has sources, and
    the messages not folded into the summary, with only what a turn reads.

    Another user's session is not found, exactly as ``conversations.get_owned_or_raise``.
    The summary only ever covers turns before the one being answered, and those were
    finished (or failed as stale) by then, so replies in flight are always among these.
    """
    connection = await db.connection()
    params = {"session_id": session_id, "actor_id": actor_id}
    rows = (await connection.execute(_TURN_CONTEXT, params)).all()
    if not rows:
        raise NotFoundError(conversations.SESSION_NOT_FOUND)
    split = len(_SESSION_COLUMNS)
    character_id, title, summary, summarized, name, system_prompt, style, horizon, era, ready = (
        rows[0][:split]
    )
    if name is None:  # the outer join found no character
        raise NotFoundError(_CHARACTER_GONE)
    voice = prompting.CharacterVoice(
        name=name,
        system_prompt=system_prompt,
        speaking_style=style,
        knowledge_horizon_year=horizon,
        era=era,
    )
    session = _TurnSession(session_id, character_id, title, summary, summarized, voice, bool(ready))
    recent = [_RecentMessage._make(row[split:]) for row in rows if row[split] is not None]
    return session, recent


def _history(
    messages: Sequence[ChatMessage | _RecentMessage], *, first_position: int = 0
) -> list[tuple[int, PromptMessage]]:
    """Turns the model should remember: user messages and replies that said something.

    ``messages`` is a run of the session's messages starting at ``first_position``.
    """
    remembered: list[tuple[int, PromptMessage]] = []
    for position, message in enumerate(messages, start=first_position):
        if message.role == MessageRole.USER:
            remembered.append((position, PromptMessage(role="user", content=message.content)))
        elif message.content and message.status in (MessageStatus.COMPLETE, MessageStatus.STOPPED):
            remembered.append((position, PromptMessage(role="assistant", content=message.content)))
    return remembered


def _character_voice(character: Character | None) -> prompting.CharacterVoice:
    if character is None:
        raise NotFoundError(_CHARACTER_GONE)
    return prompting.CharacterVoice(
        name=character.name,
        system_prompt=character.system_prompt,
        speaking_style=character.speaking_style,
        knowledge_horizon_year=character.knowledge_horizon_year,
        era=character.era,
    )


async def _voice(db: AsyncSession, character_id: str) -> prompting.CharacterVoice:
    return _character_voice(await db.get(Character, character_id))


async def _prepare(
    db: AsyncSession,
    *,
    actor_id: uuid.UUID,
    session: ChatSession | _TurnSession,
    user_message: ChatMessage,
    assistant: ChatMessage,
    replay: ChatMessage | None = None,
    replaces: ChatMessagePublic | None = None,
) -> PreparedTurn:
    messages = await _session_messages(db, session.id)
    user_position = next(i for i, m in enumerate(messages) if m.id == user_message.id)
    start = session.summarized_message_count
    turn = PreparedTurn(
        actor_id=actor_id,
        session_id=session.id,
        character_id=session.character_id,
        voice=await _voice(db, session.character_id),
        user_message=conversations.message_public(user_message),
        assistant_message_id=assistant.id,
        summary=session.summary,
        history=_history(messages[start:user_position], first_position=start),
        user_position=user_position,
        replay=conversations.message_public(replay) if replay else None,
        replaces=replaces,
    )
    # End the read transaction: the caller is about to wait on a model.
    await db.commit()
    return turn


async def _existing_send(
    db: AsyncSession,
    *,
    actor_id: uuid.UUID,
    session: ChatSession | _TurnSession,
    client_message_id: str,
    content: str,
) -> PreparedTurn | None:
    """A retried send: return its turn, replaying the saved reply if there is one.
    The same id with other words is a client's mistake, not a retry: refused."""
    previous = (
        await db.exec(
            select(ChatMessage).where(
                ChatMessage.session_id == session.id,
                ChatMessage.client_message_id == client_message_id,
            )
        )
    ).first()
    if previous is None:
        return None
    if previous.content != content:
        raise ConflictError(
            "This client_message_id was already used for another message in this "
            "conversation. Use a new id for a new message."
        )
    messages = await _session_messages(db, session.id)
    position = next(i for i, m in enumerate(messages) if m.id == previous.id)
    following = messages[position + 1] if position + 1 < len(messages) else None
    if following is not None and following.role == MessageRole.ASSISTANT:
        # Its reply still being written: refuse, as a new send would (an empty reply
        # replayed as finished would say nothing); one left by a crash is failed first.
        _fail_stale(db, [following])
        if _unanswered(following) and following.id == messages[-1].id:
            # The first try ended before a word (its client went away, or the model
            # could not answer): a retry is asked to answer, not told nothing.
            await _answer_again(db, following)
            await db.commit()
            return await _prepare(
                db, actor_id=actor_id, session=session, user_message=previous, assistant=following
            )
        return await _prepare(
            db, actor_id=actor_id, session=session, user_message=previous, assistant=following,
            replay=following,
        )  # fmt: skip
    assistant = ChatMessage(
        session_id=session.id, role=MessageRole.ASSISTANT, status=MessageStatus.STREAMING
    )
    db.add(assistant)
    await db.commit()
    return await _prepare(
        db, actor_id=actor_id, session=session, user_message=previous, assistant=assistant
    )


async def start_turn(
    db: AsyncSession,
    *,
    actor: User,
    session_id: uuid.UUID,
    content: str,
    client_message_id: str | None = None,
) -> PreparedTurn:
    """Validate and persist the user's message; nothing has been sent to a model yet.

    One transaction and no re-reads: the session's activity and title first (its row
    lock makes another send to the session wait for this one), one query for the
    session, its character and the messages not yet summarized, then the user message
    and the reply placeholder, and one commit, done before this returns. Its statements
    are Core: they neither flush pending ORM objects nor refresh those already loaded
    in ``db``.
    """
    text = validate_content(content)
    client_id = _validate_client_id(client_message_id)
    actor_id = actor.id  # a rollback expires the actor; keep its id
    now = utcnow()
    connection = await db.connection()
    touched = await connection.execute(
        _TOUCH,
        {
            "session_id": session_id,
            "actor_id": actor_id,
            "touched": now + _TICK,
            "new_title": prompting.title_from_message(text),
        },
    )
    if touched.rowcount == 0:
        raise NotFoundError(conversations.SESSION_NOT_FOUND)
    session, recent = await _turn_context(db, actor_id=actor_id, session_id=session_id)
    if client_id is not None and any(m.client_message_id == client_id for m in recent):
        await db.rollback()  # a retry leaves the session as it was
        existing = await _existing_send(
            db, actor_id=actor_id, session=session, client_message_id=client_id, content=text
        )
        assert existing is not None
        return existing
    stale = [message.id for message in _stale_replies(recent)]
    user_message, user_row = _new_message(
        session_id, at=now, role=MessageRole.USER, content=text, client_message_id=client_id
    )
    # Strictly later, so the reply always sorts after its question.
    assistant, assistant_row = _new_message(
        session_id, at=now + _TICK, role=MessageRole.ASSISTANT, status=MessageStatus.STREAMING
    )
    try:
        if stale:
            await connection.execute(_FAIL_STALE, {"stale": stale})
        await connection.execute(_INSERT_MESSAGES, [user_row, assistant_row])
        await db.commit()
    except IntegrityError:
        await db.rollback()
        return await _raced_send(
            db, actor_id=actor_id, session_id=session_id, client_id=client_id, content=text
        )
    first_position = session.summarized_message_count
    return PreparedTurn(
        actor_id=actor_id,
        session_id=session_id,
        character_id=session.character_id,
        voice=session.voice,
        user_message=user_message,
        assistant_message_id=assistant.id,
        summary=session.summary,
        history=_history(recent, first_position=first_position),
        user_position=first_position + len(recent),
        may_have_sources=session.has_ready_sources,
    )


def _new_message(
    session_id: uuid.UUID,
    *,
    at: datetime,
    role: MessageRole,
    content: str = "",
    status: MessageStatus = MessageStatus.COMPLETE,
    client_message_id: str | None = None,
) -> tuple[ChatMessagePublic, dict[str, Any]]:
    """A new message as the API shows it, and its row with every column given (as a
    flush of a new ChatMessage would write it), for a Core insert.

    No ChatMessage is built: SQLModel inspects the signature of each ``default_factory``
    on every construction it has to call one for, and even with every value given a
    message costs more to build than its row.
    """
    message = ChatMessagePublic(
        id=new_id(),
        session_id=session_id,
        role=role,
        content=content,
        status=status,
        cut_short=False,
        model=None,
        prompt_tokens=0,
        completion_tokens=0,
        credits_charged=0,
        error=None,
        client_message_id=client_message_id,
        citations=[],
        created_at=at,
    )
    return message, {**message.model_dump(), "updated_at": at}


async def _raced_send(
    db: AsyncSession,
    *,
    actor_id: uuid.UUID,
    session_id: uuid.UUID,
    client_id: str | None,
    content: str,
) -> PreparedTurn:
    """After an insert conflict: the same client id came in from another request (or is
    older than the summary), so this send is a retry of that one; else the session went.
    """
    session, _ = await _turn_context(db, actor_id=actor_id, session_id=session_id)
    existing = None
    if client_id is not None:
        existing = await _existing_send(
            db, actor_id=actor_id, session=session, client_message_id=client_id, content=content
        )
    if existing is None:
        raise ConflictError("The conversation changed while sending. Try again.")
    return existing


async def _refuse_if_replying(db: AsyncSession, session_id: uuid.UUID) -> None:
    """One reply at a time per session; a reply stuck by a crashed process is failed."""
    in_flight = (
        await db.exec(
            select(ChatMessage).where(
                ChatMessage.session_id == session_id,
                ChatMessage.status == MessageStatus.STREAMING,
            )
        )
    ).all()
    _fail_stale(db, in_flight)


_M = TypeVar("_M", ChatMessage, _RecentMessage)
_T = TypeVar("_T")


def _fail_stale(db: AsyncSession, messages: Sequence[ChatMessage]) -> None:
    """Mark failed the replies a crashed process left streaming (refused while one is
    being written)."""
    for message in _stale_replies(messages):
        message.status, message.error = MessageStatus.FAILED, INTERRUPTED_ERROR
        db.add(message)


def _stale_replies(messages: Sequence[_M]) -> list[_M]:
    """Refuse while a reply is being written; else the replies left streaming by a crash,
    which the caller marks failed."""
    stale_before = conversations.live_reply_cutoff()
    stale: list[_M] = []
    for message in messages:
        if message.status != MessageStatus.STREAMING:
            continue
        if message.updated_at > stale_before:
            raise ConflictError(_REPLYING)
        stale.append(message)
    return stale


async def start_regenerate(db: AsyncSession, *, actor: User, session_id: uuid.UUID) -> PreparedTurn:
    """Replace the last reply with a new one for the same question."""
    session = await conversations.get_owned_or_raise(db, actor=actor, session_id=session_id)
    messages = await _session_messages(db, session.id)
    if len(messages) < 2 or messages[-1].role != MessageRole.ASSISTANT:
        raise InvalidInputError("There is no reply to regenerate yet.")
    await _refuse_if_replying(db, session.id)
    user_message, reply = messages[-2], messages[-1]
    earlier = conversations.message_public(reply)
    await _answer_again(db, reply)
    conversations.touch(session)
    db.add(session)
    await db.commit()
    return await _prepare(
        db,
        actor_id=actor.id,
        session=session,
        user_message=user_message,
        assistant=reply,
        replaces=earlier,
    )


async def _answer_again(db: AsyncSession, reply: ChatMessage) -> None:
    """The reply's row takes the next answer to its question. Its words stay in the
    database until that answer is saved over them: a process that dies meanwhile leaves
    them (marked interrupted), never an empty reply.

    Taken only if it is still as read: of two regenerates (or retries) at once, from two
    tabs or clients, one gets the row and the other a conflict, on PostgreSQL too, where
    reading the reply took no lock."""
    taken = await db.exec(
        update(ChatMessage)
        .where(
            col(ChatMessage.id) == reply.id,
            col(ChatMessage.status) == reply.status,
            col(ChatMessage.content) == reply.content,
        )
        .values(status=MessageStatus.STREAMING, updated_at=utcnow())
    )
    if taken.rowcount != 1:
        await db.rollback()
        raise ConflictError(_REPLYING)


def _unanswered(reply: ChatMessage) -> bool:
    """A reply that ended without a word of an answer."""
    return reply.status != MessageStatus.STREAMING and not reply.content.strip()


def _gives_back_earlier(turn: PreparedTurn, reply: _Reply) -> bool:
    """A regenerated reply stays until its replacement is whole: one that fails, is
    stopped (by the user, or by an API client that went away), or says nothing gives it
    back; if it had words to give back."""
    earlier = turn.replaces
    if earlier is None or not earlier.content.strip():
        return False
    return reply.status != MessageStatus.COMPLETE or not reply.text.strip()


def _first_words_budget(chat_model: ChatModel) -> float:
    """How long a turn may wait for its first words, all told (sources, summary, the
    chain's models and their retries), so that with the longest a model may then write,
    the reply is saved well before STALE_REPLY_SECONDS takes it for one left by a crash."""
    longest_reply = max((spec.total_timeout_seconds for spec in chat_model.models), default=0)
    return max(1.0, STALE_REPLY_SECONDS - TURN_MARGIN_SECONDS - longest_reply)


async def _by(deadline: float, work: Awaitable[_T], reply: _Reply) -> _T:
    """``work``'s result, if it comes by ``deadline`` (event loop time); else the reply
    has timed out."""
    limit = asyncio.timeout_at(deadline)
    try:
        async with limit:
            return await work
    except TimeoutError:
        if not limit.expired():
            raise
        raise ModelTimedOutError(reply.model or "the model chain") from None


# How often a wait for the model (a summary being written, a reply's first words) looks
# whether the user has pressed Stop; once words flow, each one does.
STOP_POLL_SECONDS = 0.2
# Whether the user has pressed Stop; asked in the task that reads the reply's stream.
StopCheck = Callable[[], Awaitable[bool]]


class _StoppedWaiting(Exception):
    """The user stopped the reply while it waited for the model."""


async def _unless_stopped(work: Awaitable[_T], should_stop: StopCheck | None) -> _T:
    """What ``work`` gives; if the user stops first, ``work`` is cancelled and
    :class:`_StoppedWaiting` raised."""
    if should_stop is None:
        return await work
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=STOP_POLL_SECONDS)
            if done:
                return task.result()
            if await should_stop():
                raise _StoppedWaiting
    finally:
        await _end(task)


async def _end(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has ended, even through a cancellation of our
    own meanwhile (then raised again once it has): what it was running (a stream from
    the model) must not be touched by anyone else before then."""
    cancelled = False
    if not task.done():
        task.cancel()
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if not task.cancelled():
        task.exception()  # read: its error, if any, is ours to report or not
    if cancelled:
        raise asyncio.CancelledError


async def _fold_memory(
    open_db: OpenDb,
    *,
    turn: PreparedTurn,
    chat_model: ChatModel,
    to_fold: list[int],
    summary: str,
    should_stop: StopCheck | None = None,
) -> str:
    """Fold older turns into the session's rolling summary (the model writes it). A Stop
    while the model writes it ends the wait (raising _StoppedWaiting); once it is
    written, it is saved, uncut."""
    folded = [message for position, message in turn.history if position in to_fold]
    started = time.perf_counter()
    try:
        completion = await _unless_stopped(
            chat_model.complete(
                prompting.summary_request(turn.voice, previous_summary=summary, turns=folded),
                max_tokens=prompting.SUMMARY_MAX_TOKENS,
            ),
            should_stop,
        )
        new_summary = completion.text.strip() or prompting.fallback_summary(summary, folded)
        usage: UsageEvent | None = UsageEvent(
            user_id=turn.actor_id,
            session_id=turn.session_id,
            character_id=turn.character_id,
            kind=UsageKind.SUMMARY,
            model=completion.model,
            prompt_tokens=completion.prompt_tokens or 0,
            completion_tokens=completion.completion_tokens or 0,
            latency_ms=round((time.perf_counter() - started) * 1000),
        )
    except ProviderError as exc:
        log.warning("chat.summary_failed", error=type(exc).__name__)
        new_summary, usage = prompting.fallback_summary(summary, folded), None
    next_unsummarized = min([p for p, _ in turn.history if p not in to_fold] + [turn.user_position])
    async with open_db() as db:
        session = await db.get(ChatSession, turn.session_id)
        if session is not None:
            session.summary = new_summary
            session.summarized_message_count = next_unsummarized
            db.add(session)
        if usage is not None:
            db.add(usage)
        await db.commit()
    return new_summary


async def _retrieve(
    open_db: OpenDb, *, turn: PreparedTurn, retriever: Retriever | None, chat_model: ChatModel
) -> list[CitationPublic]:
    """Passages for this question, numbered, and trimmed to what the prompt can hold.

    Sources are an aid, not a requirement: if retrieval fails the reply still comes.
    """
    if retriever is None or not turn.may_have_sources:
        return []
    try:
        async with open_db() as db:
            passages = await retriever.passages(
                db,
                character_id=turn.character_id,
                session_id=turn.session_id,
                query=turn.user_message.content,
            )
    except Exception as exc:  # noqa: BLE001 - answer without sources rather than fail
        log.warning("chat.retrieval_failed", error_type=type(exc).__name__)
        return []
    numbered = [
        CitationPublic(n=n, **search_service.passage_public(passage).model_dump())
        for n, passage in enumerate(passages, start=1)
    ]
    context_window = min(spec.context_window for spec in chat_model.models)
    return numbered[: len(_source_passages(numbered, context_window=context_window))]


def _source_passages(
    citations: Sequence[CitationPublic], *, context_window: int
) -> list[prompting.SourcePassage]:
    return prompting.fit_sources(
        [prompting.SourcePassage(c.n, c.document_name, c.page, c.text) for c in citations],
        budget_tokens=int(context_window * SOURCES_SHARE_OF_CONTEXT),
    )


async def _prompt(
    open_db: OpenDb,
    *,
    turn: PreparedTurn,
    chat_model: ChatModel,
    citations: Sequence[CitationPublic] = (),
    should_stop: StopCheck | None = None,
) -> list[PromptMessage]:
    specs = chat_model.models
    context_window = min(spec.context_window for spec in specs)
    max_reply = max(spec.max_tokens for spec in specs)
    summary = turn.summary
    sources = _source_passages(citations, context_window=context_window)
    budget = prompting.history_budget(
        context_window=context_window,
        max_reply_tokens=max_reply,
        # Leave room for a summary to grow into.
        system=prompting.system_prompt(turn.voice, summary=summary or "x" * 600, sources=sources),
        user_message=turn.user_message.content,
    )
    plan = prompting.plan_memory([m for _, m in turn.history], budget_tokens=budget)
    if plan.to_fold:
        to_fold = [position for position, _ in turn.history[: len(plan.to_fold)]]
        summary = await _fold_memory(
            open_db,
            turn=turn,
            chat_model=chat_model,
            to_fold=to_fold,
            summary=summary,
            should_stop=should_stop,
        )
    return prompting.chat_messages(
        turn.voice,
        summary=summary,
        recent=plan.recent,
        user_message=turn.user_message.content,
        sources=sources,
    )


# The finish reason of a reply that ran into its max tokens (OpenAI's, which
# OpenRouter and llama-server report too).
LENGTH_LIMIT_REACHED = "length"
# What asks for the rest of a reply that ran into it: the conversation then reads as
# the user asking for the rest, which is what happened (the chat page's Continue).
CONTINUE_MESSAGE = "Please go on."


@dataclass
class _Reply:
    parts: list[str] = field(default_factory=list)
    status: MessageStatus = MessageStatus.STREAMING
    error: ProviderError | None = None
    end: StreamEnd | None = None
    model: str | None = None
    citations: list[CitationPublic] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _restore(message: ChatMessage, earlier: ChatMessagePublic) -> None:
    message.content, message.status = earlier.content, earlier.status
    message.cut_short, message.model, message.error = (
        earlier.cut_short,
        earlier.model,
        earlier.error,
    )
    message.credits_charged = earlier.credits_charged
    message.prompt_tokens = earlier.prompt_tokens
    message.completion_tokens = earlier.completion_tokens
    message.citations = [c.model_dump(mode="json") for c in earlier.citations]


async def _persist_reply(
    open_db: OpenDb,
    *,
    turn: PreparedTurn,
    reply: _Reply,
    prompt: Sequence[PromptMessage],
    started: float,
) -> ChatMessagePublic:
    end = reply.end
    prompt_tokens = end.prompt_tokens if end and end.prompt_tokens is not None else None
    completion_tokens = end.completion_tokens if end and end.completion_tokens is not None else None
    if prompt_tokens is None:
        prompt_tokens = prompting.estimate_prompt_tokens(prompt) if prompt else 0
    if completion_tokens is None:
        completion_tokens = (
            max(0, prompting.estimate_tokens(reply.text) - prompting.MESSAGE_OVERHEAD_TOKENS)
            if reply.text
            else 0
        )
    async with open_db() as db:
        message = await db.get(ChatMessage, turn.assistant_message_id)
        if message is None:  # the session was deleted while the reply streamed
            message = ChatMessage(
                id=turn.assistant_message_id, session_id=turn.session_id, role=MessageRole.ASSISTANT
            )
            return conversations.message_public(message)
        model = (end.model if end else None) or reply.model
        if _gives_back_earlier(turn, reply):
            assert turn.replaces is not None
            _restore(message, turn.replaces)
        else:
            message.content = reply.text
            message.status = reply.status
            message.cut_short = (
                reply.status == MessageStatus.COMPLETE
                and end is not None
                and end.finish_reason == LENGTH_LIMIT_REACHED
            )
            message.model = model
            message.prompt_tokens = prompt_tokens
            message.completion_tokens = completion_tokens
            message.error = (
                reply.error.public_message
                if reply.error
                else INTERRUPTED_ERROR
                if reply.status == MessageStatus.FAILED
                else None
            )
            cited = prompting.cited_numbers(reply.text)
            message.citations = [
                c.model_copy(update={"cited": c.n in cited}).model_dump(mode="json")
                for c in reply.citations
            ]
        message.updated_at = utcnow()
        db.add(message)
        session = await db.get(ChatSession, turn.session_id)
        if session is not None:
            conversations.touch(session)
            db.add(session)
        if prompt:
            db.add(
                UsageEvent(
                    user_id=turn.actor_id,
                    session_id=turn.session_id,
                    message_id=message.id,
                    character_id=turn.character_id,
                    kind=UsageKind.CHAT,
                    # The tokens this answer used, kept or not.
                    model=model or "",
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    latency_ms=round((time.perf_counter() - started) * 1000),
                )
            )
        await db.commit()
        return conversations.message_public(message)


async def stream_turn(
    open_db: OpenDb,
    *,
    turn: PreparedTurn,
    chat_model: ChatModel,
    retriever: Retriever | None = None,
    should_stop: StopCheck | None = None,
) -> AsyncIterator[TurnEvent]:
    """Stream the reply; the reply is saved whatever happens, even on cancellation.

    ``should_stop`` is asked after each piece of the reply, and every
    :data:`STOP_POLL_SECONDS` while the model has yet to give one; it runs in the task
    that reads this stream."""
    if turn.replay is not None:
        yield ReplySources(turn.replay.citations)
        if turn.replay.content:
            yield ReplyDelta(turn.replay.content)
        yield ReplyDone(turn.replay)
        return
    started = time.perf_counter()
    reply = _Reply(model=chat_model.models[0].name if chat_model.models else None)
    prompt: list[PromptMessage] = []
    first_words_by = asyncio.get_running_loop().time() + _first_words_budget(chat_model)
    try:
        try:
            reply.citations = await _by(
                first_words_by,
                _retrieve(open_db, turn=turn, retriever=retriever, chat_model=chat_model),
                reply,
            )
            yield ReplySources(reply.citations)
            # A summary to write, or a long prompt, can keep the first words waiting for
            # seconds: a Stop meanwhile ends the wait.
            prompt = await _by(
                first_words_by,
                _prompt(
                    open_db,
                    turn=turn,
                    chat_model=chat_model,
                    citations=reply.citations,
                    should_stop=should_stop,
                ),
                reply,
            )
            async with contextlib.aclosing(chat_model.stream(prompt)) as events:
                event = await _by(
                    first_words_by, _unless_stopped(anext(events, None), should_stop), reply
                )
                while event is not None:
                    if isinstance(event, StreamDelta):
                        reply.parts.append(event.text)
                        yield ReplyDelta(event.text)
                    else:
                        reply.end = event
                    # A Stop that comes with the end changes nothing: the reply is whole.
                    if reply.end is None and should_stop is not None and await should_stop():
                        reply.status = MessageStatus.STOPPED
                        break
                    event = await anext(events, None)
            if reply.status == MessageStatus.STREAMING:
                reply.status = MessageStatus.COMPLETE
        except _StoppedWaiting:
            reply.status = MessageStatus.STOPPED
        except ProviderError as exc:
            log.warning("chat.reply_failed", code=exc.code, detail=str(exc))
            reply.status, reply.error = MessageStatus.FAILED, exc
        except (asyncio.CancelledError, GeneratorExit):
            reply.status = MessageStatus.STOPPED
            raise
        except Exception:
            # Not the model's (a bug, or the page's Stop check failing): saved as failed,
            # never as still being written, which would hold the conversation.
            log.exception("chat.reply_broken")
            reply.status = MessageStatus.FAILED
            raise
    finally:
        # Shielded: a client that goes away must not cancel saving what it was sent.
        saved = await asyncio.shield(
            _persist_reply(open_db, turn=turn, reply=reply, prompt=prompt, started=started)
        )
    if reply.error is None:
        yield ReplyDone(saved, earlier_kept=_gives_back_earlier(turn, reply))
    elif _gives_back_earlier(turn, reply):
        kept = f"{reply.error.public_message} The earlier reply is kept."
        yield ReplyFailed(saved, reply.error.code, kept)
    else:
        yield ReplyFailed(saved, reply.error.code, reply.error.public_message)
