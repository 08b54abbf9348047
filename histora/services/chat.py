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
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute, load_only
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
from histora.providers.chat_types import PromptMessage, StreamDelta, StreamEnd
from histora.services import conversations, prompting, retrieval
from histora.services import search as search_service
from histora.services.rate_limits import RateLimiter
from histora.services.search import Retriever
from histora.settings import Settings

log = structlog.get_logger(__name__)

MAX_MESSAGE_CHARS = 4000
CLIENT_ID_MAX_LENGTH = 64
INTERRUPTED_ERROR = "The reply was interrupted before it finished."
# Longer than any model call may take (total timeout), so only dead replies match.
STALE_REPLY_SECONDS = 600
# At most this share of the model's context goes to retrieved passages.
SOURCES_SHARE_OF_CONTEXT = 0.35

_TICK = timedelta(microseconds=1)
# What a turn reads of a message and of a character; the rest stays in the database.
# (Cast: SQLModel types the class attributes as values, load_only wants attributes.)
_TURN_MESSAGE_COLUMNS = cast(
    "list[QueryableAttribute[Any]]",
    [
        ChatMessage.id,
        ChatMessage.role,
        ChatMessage.content,
        ChatMessage.status,
        ChatMessage.client_message_id,
        ChatMessage.updated_at,
    ],
)
_VOICE_COLUMNS = cast(
    "list[QueryableAttribute[Any]]",
    [
        Character.name,
        Character.system_prompt,
        Character.speaking_style,
        Character.knowledge_horizon_year,
        Character.era,
    ],
)

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


@dataclass(frozen=True)
class ReplyFailed:
    message: ChatMessagePublic
    code: str
    public_message: str


TurnEvent = ReplySources | ReplyDelta | ReplyDone | ReplyFailed


async def check_send_rate(limiter: RateLimiter, *, actor: User, settings: Settings) -> None:
    """Sends per user, the same limit for the web page and the API."""
    await limiter.hit(settings.chat_rate_limit, "chat-user", str(actor.id))


def _validate_content(content: str) -> str:
    text = content.strip()
    if not text:
        raise InvalidInputError("A message cannot be empty.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise InvalidInputError(f"A message is limited to {MAX_MESSAGE_CHARS} characters.")
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


async def _unsummarized_messages(db: AsyncSession, session: ChatSession) -> list[ChatMessage]:
    """The messages not folded into the summary, in order, with only what a turn reads.

    The summary only ever covers turns before the one being answered, and those were
    finished (or failed as stale) by then, so replies in flight are always among these.
    """
    rows = await db.exec(
        select(ChatMessage)
        .options(load_only(*_TURN_MESSAGE_COLUMNS))
        .where(ChatMessage.session_id == session.id)
        .order_by(col(ChatMessage.created_at), col(ChatMessage.id))
        .offset(session.summarized_message_count)
    )
    return list(rows.all())


def _history(
    messages: Sequence[ChatMessage], *, first_position: int = 0
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
        raise NotFoundError("This historical figure is no longer available.")
    return prompting.CharacterVoice(
        name=character.name,
        system_prompt=character.system_prompt,
        speaking_style=character.speaking_style,
        knowledge_horizon_year=character.knowledge_horizon_year,
        era=character.era,
    )


async def _voice(db: AsyncSession, character_id: str) -> prompting.CharacterVoice:
    return _character_voice(await db.get(Character, character_id))


@dataclass(frozen=True)
class _OwnedSession:
    session: ChatSession
    voice: prompting.CharacterVoice
    has_ready_sources: bool


# Whether retrieval would find any document for this session (its character's or its
# own); correlated with the ChatSession row of the query it is used in.
_READY_SOURCES = (
    select(Document.id)
    .where(
        retrieval.ready_in_scope(
            character_id=col(ChatSession.character_id), session_id=col(ChatSession.id)
        )
    )
    .exists()
)


async def _owned_session_and_voice(
    db: AsyncSession, *, actor_id: uuid.UUID, session_id: uuid.UUID
) -> _OwnedSession:
    """The actor's session, its character's voice and whether it has sources, in one query.

    Another user's session is not found, exactly as ``conversations.get_owned_or_raise``.
    """
    row = (
        await db.exec(
            select(ChatSession, Character, _READY_SOURCES)
            .outerjoin(Character, col(Character.id) == col(ChatSession.character_id))
            .where(ChatSession.id == session_id, ChatSession.user_id == actor_id)
            .options(load_only(*_VOICE_COLUMNS))
        )
    ).first()
    if row is None:
        raise NotFoundError(conversations.SESSION_NOT_FOUND)
    session, character, has_ready_sources = row
    return _OwnedSession(session, _character_voice(character), bool(has_ready_sources))


async def _prepare(
    db: AsyncSession,
    *,
    actor_id: uuid.UUID,
    session: ChatSession,
    user_message: ChatMessage,
    assistant: ChatMessage,
    replay: ChatMessage | None = None,
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
    )
    # End the read transaction: the caller is about to wait on a model.
    await db.commit()
    return turn


async def _existing_send(
    db: AsyncSession, *, actor_id: uuid.UUID, session: ChatSession, client_message_id: str
) -> PreparedTurn | None:
    """A retried send: return its turn, replaying the saved reply if there is one."""
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
    messages = await _session_messages(db, session.id)
    position = next(i for i, m in enumerate(messages) if m.id == previous.id)
    following = messages[position + 1] if position + 1 < len(messages) else None
    if following is not None and following.role == MessageRole.ASSISTANT:
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

    One transaction and no re-reads: the session with its character, the messages not
    yet summarized, then one commit of the user message, the reply placeholder and the
    session's title and activity. The commit is done before this returns.
    """
    text = _validate_content(content)
    client_id = _validate_client_id(client_message_id)
    actor_id = actor.id  # a rollback expires the actor; keep its id
    owned = await _owned_session_and_voice(db, actor_id=actor_id, session_id=session_id)
    session = owned.session
    recent = await _unsummarized_messages(db, session)
    if client_id is not None and any(m.client_message_id == client_id for m in recent):
        existing = await _existing_send(
            db, actor_id=actor_id, session=session, client_message_id=client_id
        )
        assert existing is not None
        return existing
    _fail_stale_replies(db, recent)
    now = utcnow()
    user_message = _new_message(
        session.id, at=now, role=MessageRole.USER, content=text, client_message_id=client_id
    )
    # Strictly later, so the reply always sorts after its question.
    assistant = _new_message(
        session.id, at=now + _TICK, role=MessageRole.ASSISTANT, status=MessageStatus.STREAMING
    )
    db.add_all([user_message, assistant])
    if not session.summarized_message_count and session.title == DEFAULT_TITLE:
        session.title = prompting.title_from_message(text)
    conversations.touch(session)
    db.add(session)
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        return await _raced_send(db, actor_id=actor_id, session_id=session_id, client_id=client_id)
    first_position = session.summarized_message_count
    return PreparedTurn(
        actor_id=actor_id,
        session_id=session.id,
        character_id=session.character_id,
        voice=owned.voice,
        user_message=conversations.message_public(user_message),
        assistant_message_id=assistant.id,
        summary=session.summary,
        history=_history(recent, first_position=first_position),
        user_position=first_position + len(recent),
        may_have_sources=owned.has_ready_sources,
    )


def _new_message(
    session_id: uuid.UUID,
    *,
    at: datetime,
    role: MessageRole,
    content: str = "",
    status: MessageStatus = MessageStatus.COMPLETE,
    client_message_id: str | None = None,
) -> ChatMessage:
    """A new message row, every defaulted field given.

    SQLModel inspects the signature of each ``default_factory`` on every construction
    it has to call one for (about 0.1 ms each, four of them here); giving the values
    makes a message about five times cheaper to build, on the path to the first token.
    """
    return ChatMessage(
        id=new_id(),
        session_id=session_id,
        role=role,
        content=content,
        status=status,
        client_message_id=client_message_id,
        citations=[],
        created_at=at,
        updated_at=at,
    )


async def _raced_send(
    db: AsyncSession, *, actor_id: uuid.UUID, session_id: uuid.UUID, client_id: str | None
) -> PreparedTurn:
    """After an insert conflict: the same client id came in from another request (or is
    older than the summary), so this send is a retry of that one; else the session went.
    """
    session = (await _owned_session_and_voice(db, actor_id=actor_id, session_id=session_id)).session
    existing = None
    if client_id is not None:
        existing = await _existing_send(
            db, actor_id=actor_id, session=session, client_message_id=client_id
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
    _fail_stale_replies(db, in_flight)


def _fail_stale_replies(db: AsyncSession, messages: Sequence[ChatMessage]) -> None:
    """Refuse while a reply is being written; fail replies left streaming by a crash."""
    stale_before = utcnow() - timedelta(seconds=STALE_REPLY_SECONDS)
    for message in messages:
        if message.status != MessageStatus.STREAMING:
            continue
        if message.updated_at > stale_before:
            raise ConflictError("A reply is still being written. Wait for it or stop it first.")
        message.status = MessageStatus.FAILED
        message.error = INTERRUPTED_ERROR
        db.add(message)


async def start_regenerate(db: AsyncSession, *, actor: User, session_id: uuid.UUID) -> PreparedTurn:
    """Replace the last reply with a new one for the same question."""
    session = await conversations.get_owned_or_raise(db, actor=actor, session_id=session_id)
    messages = await _session_messages(db, session.id)
    if len(messages) < 2 or messages[-1].role != MessageRole.ASSISTANT:
        raise InvalidInputError("There is no reply to regenerate yet.")
    await _refuse_if_replying(db, session.id)
    user_message = messages[-2]
    await db.delete(messages[-1])
    assistant = ChatMessage(
        session_id=session.id, role=MessageRole.ASSISTANT, status=MessageStatus.STREAMING
    )
    db.add(assistant)
    conversations.touch(session)
    db.add(session)
    await db.commit()
    return await _prepare(
        db, actor_id=actor.id, session=session, user_message=user_message, assistant=assistant
    )


async def _fold_memory(
    open_db: OpenDb, *, turn: PreparedTurn, chat_model: ChatModel, to_fold: list[int], summary: str
) -> str:
    """Fold older turns into the session's rolling summary (the model writes it)."""
    folded = [message for position, message in turn.history if position in to_fold]
    started = time.perf_counter()
    try:
        completion = await chat_model.complete(
            prompting.summary_request(turn.voice, previous_summary=summary, turns=folded),
            max_tokens=prompting.SUMMARY_MAX_TOKENS,
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
            open_db, turn=turn, chat_model=chat_model, to_fold=to_fold, summary=summary
        )
    return prompting.chat_messages(
        turn.voice,
        summary=summary,
        recent=plan.recent,
        user_message=turn.user_message.content,
        sources=sources,
    )


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
        message.content = reply.text
        message.status = reply.status
        message.model = (end.model if end else None) or reply.model
        message.prompt_tokens = prompt_tokens
        message.completion_tokens = completion_tokens
        message.error = reply.error.public_message if reply.error else None
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
                    model=message.model or "",
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
    should_stop: Callable[[], bool] | None = None,
) -> AsyncIterator[TurnEvent]:
    """Stream the reply; the reply is saved whatever happens, even on cancellation."""
    if turn.replay is not None:
        yield ReplySources(turn.replay.citations)
        if turn.replay.content:
            yield ReplyDelta(turn.replay.content)
        yield ReplyDone(turn.replay)
        return
    started = time.perf_counter()
    reply = _Reply(model=chat_model.models[0].name if chat_model.models else None)
    prompt: list[PromptMessage] = []
    try:
        try:
            reply.citations = await _retrieve(
                open_db, turn=turn, retriever=retriever, chat_model=chat_model
            )
            yield ReplySources(reply.citations)
            prompt = await _prompt(
                open_db, turn=turn, chat_model=chat_model, citations=reply.citations
            )
            async with contextlib.aclosing(chat_model.stream(prompt)) as events:
                async for event in events:
                    if isinstance(event, StreamDelta):
                        reply.parts.append(event.text)
                        yield ReplyDelta(event.text)
                    else:
                        reply.end = event
                    if should_stop is not None and should_stop():
                        reply.status = MessageStatus.STOPPED
                        break
            if reply.status == MessageStatus.STREAMING:
                reply.status = MessageStatus.COMPLETE
        except ProviderError as exc:
            log.warning("chat.reply_failed", code=exc.code, detail=str(exc))
            reply.status, reply.error = MessageStatus.FAILED, exc
        except (asyncio.CancelledError, GeneratorExit):
            reply.status = MessageStatus.STOPPED
            raise
    finally:
        # Shielded: a client that goes away must not cancel saving what it was sent.
        saved = await asyncio.shield(
            _persist_reply(open_db, turn=turn, reply=reply, prompt=prompt, started=started)
        )
    if reply.error is not None:
        yield ReplyFailed(saved, reply.error.code, reply.error.public_message)
    else:
        yield ReplyDone(saved)
