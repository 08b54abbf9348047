"""Chat sessions: create, list with previews, rename, archive, delete; messages.

Every function takes the acting user and only ever returns that user's data; a
session of someone else is reported as not found, so ids leak nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import ConflictError, InvalidInputError, NotFoundError
from histora.models import Character, ChatMessage, ChatSession, MessageStatus, User
from histora.models.base import Page, utcnow
from histora.models.chat import ChatMessagePublic, ChatSessionPublic, SessionLink
from histora.services import characters as characters_service
from histora.services.text_input import refuse_nul, without_bidi_controls

# Re-exported: the chat services and pages read it here.
from histora.settings import STALE_REPLY_SECONDS as STALE_REPLY_SECONDS

TITLE_MAX_LENGTH = 200
PREVIEW_LENGTH = 140
SESSION_NOT_FOUND = "No such conversation."


def session_id_from(raw: str) -> uuid.UUID:
    """A conversation id from a page or a link; malformed ones are simply not found."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFoundError(SESSION_NOT_FOUND) from None


def message_public(message: ChatMessage) -> ChatMessagePublic:
    return ChatMessagePublic.model_validate(message, from_attributes=True)


def _session_public(
    session: ChatSession, *, character_name: str, preview: str
) -> ChatSessionPublic:
    return ChatSessionPublic(
        id=session.id,
        character_id=session.character_id,
        character_name=character_name,
        title=session.title,
        archived=session.archived,
        preview=preview,
        created_at=session.created_at,
        updated_at=session.updated_at,
        last_message_at=session.last_message_at,
    )


async def get_owned(db: AsyncSession, *, actor: User, session_id: uuid.UUID) -> ChatSession | None:
    session = await db.get(ChatSession, session_id)
    if session is None or session.user_id != actor.id:
        return None
    return session


async def get_owned_or_raise(
    db: AsyncSession, *, actor: User, session_id: uuid.UUID
) -> ChatSession:
    session = await get_owned(db, actor=actor, session_id=session_id)
    if session is None:
        raise NotFoundError(SESSION_NOT_FOUND)
    return session


async def _describe(db: AsyncSession, session: ChatSession) -> ChatSessionPublic:
    character = await db.get(Character, session.character_id)
    last = (
        await db.exec(
            select(ChatMessage.content)
            .where(ChatMessage.session_id == session.id)
            .order_by(col(ChatMessage.created_at).desc())
            .limit(1)
        )
    ).first()
    return _session_public(
        session,
        character_name=character.name if character else session.character_id,
        preview=(last or "")[:PREVIEW_LENGTH],
    )


async def create_session(db: AsyncSession, *, actor: User, character_id: str) -> ChatSessionPublic:
    character = await characters_service.get_published(db, character_id=character_id)
    if character is None:
        raise NotFoundError(f"No historical figure with id '{character_id}'.")
    session = ChatSession(user_id=actor.id, character_id=character.id)
    db.add(session)
    await db.commit()
    return _session_public(session, character_name=character.name, preview="")


async def get_session(db: AsyncSession, *, actor: User, session_id: uuid.UUID) -> ChatSessionPublic:
    return await _describe(db, await get_owned_or_raise(db, actor=actor, session_id=session_id))


def _session_filters(
    actor: User, *, character_id: str | None, include_archived: bool
) -> list[ColumnElement[bool]]:
    filters = [col(ChatSession.user_id) == actor.id]
    if character_id:
        filters.append(col(ChatSession.character_id) == character_id)
    if not include_archived:
        filters.append(col(ChatSession.archived).is_(False))
    return filters


# Most recently active first: by the last message (or the start), not the last change,
# so renaming or archiving a conversation does not move it to the top.
_MOST_RECENT_FIRST = (
    func.coalesce(col(ChatSession.last_message_at), col(ChatSession.created_at)).desc(),
    col(ChatSession.id),
)


async def list_sessions(
    db: AsyncSession,
    *,
    actor: User,
    character_id: str | None = None,
    include_archived: bool = False,
    offset: int = 0,
    limit: int = 50,
) -> Page[ChatSessionPublic]:
    """The actor's sessions, most recently active first, each with a preview."""
    statement = select(ChatSession).where(
        *_session_filters(actor, character_id=character_id, include_archived=include_archived)
    )
    total = (await db.exec(select(func.count()).select_from(statement.subquery()))).one()
    sessions = (
        await db.exec(statement.order_by(*_MOST_RECENT_FIRST).offset(offset).limit(limit))
    ).all()
    previews = await _last_messages(db, [s.id for s in sessions])
    names = await _character_names(db, {s.character_id for s in sessions})
    return Page[ChatSessionPublic](
        items=[
            _session_public(
                s,
                character_name=names.get(s.character_id, s.character_id),
                preview=previews.get(s.id, "")[:PREVIEW_LENGTH],
            )
            for s in sessions
        ],
        total=total,
    )


async def list_session_titles(
    db: AsyncSession, *, actor: User, character_id: str, limit: int = 50
) -> list[SessionLink]:
    """The actor's open sessions with one figure, most recently active first: id and
    title only, in one query (the chat page's list, refreshed after every reply)."""
    rows = await db.exec(
        select(ChatSession.id, ChatSession.title)
        .where(*_session_filters(actor, character_id=character_id, include_archived=False))
        .order_by(*_MOST_RECENT_FIRST)
        .limit(limit)
    )
    return [SessionLink(id=str(session_id), title=title) for session_id, title in rows.all()]


async def _last_messages(db: AsyncSession, session_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not session_ids:
        return {}
    ranked = (
        select(
            col(ChatMessage.session_id),
            col(ChatMessage.content),
            func.row_number()
            .over(
                partition_by=col(ChatMessage.session_id),
                order_by=col(ChatMessage.created_at).desc(),
            )
            .label("rank"),
        )
        .where(col(ChatMessage.session_id).in_(session_ids))
        .subquery()
    )
    rows = await db.exec(select(ranked.c.session_id, ranked.c.content).where(ranked.c.rank == 1))
    return {session_id: content for session_id, content in rows.all()}


async def _character_names(db: AsyncSession, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = await db.exec(select(Character.id, Character.name).where(col(Character.id).in_(ids)))
    return dict(rows.all())


async def rename_session(
    db: AsyncSession, *, actor: User, session_id: uuid.UUID, title: str
) -> ChatSessionPublic:
    clean = refuse_nul(" ".join(without_bidi_controls(title).split()), what="A title")
    if not clean:
        raise InvalidInputError("A title cannot be empty.")
    if len(clean) > TITLE_MAX_LENGTH:
        raise InvalidInputError(f"A title is limited to {TITLE_MAX_LENGTH} characters.")
    session = await get_owned_or_raise(db, actor=actor, session_id=session_id)
    session.title = clean
    db.add(session)
    await db.commit()
    return await _describe(db, session)


async def set_archived(
    db: AsyncSession, *, actor: User, session_id: uuid.UUID, archived: bool
) -> ChatSessionPublic:
    session = await get_owned_or_raise(db, actor=actor, session_id=session_id)
    session.archived = archived
    db.add(session)
    await db.commit()
    return await _describe(db, session)


def live_reply_cutoff() -> datetime:
    """A reply still marked as being written, and touched since this moment, is being
    written now; one touched before was left by a process that died."""
    return utcnow() - timedelta(seconds=STALE_REPLY_SECONDS)


async def refuse_while_replying(db: AsyncSession, session_id: uuid.UUID) -> None:
    """A conversation whose reply is being written stays until the reply is saved
    (a reply left streaming by a crashed process does not count)."""
    writing = await db.exec(
        select(ChatMessage.id)
        .where(
            ChatMessage.session_id == session_id,
            ChatMessage.status == MessageStatus.STREAMING,
            col(ChatMessage.updated_at) > live_reply_cutoff(),
        )
        .limit(1)
    )
    if writing.first() is not None:
        raise ConflictError(
            "A reply is still being written. Stop it, or let it finish, "
            "before deleting this conversation."
        )


async def delete_session(db: AsyncSession, *, actor: User, session_id: uuid.UUID) -> None:
    session = await get_owned_or_raise(db, actor=actor, session_id=session_id)
    await refuse_while_replying(db, session.id)
    await db.delete(session)
    await db.commit()


async def list_messages(
    db: AsyncSession,
    *,
    actor: User,
    session_id: uuid.UUID,
    offset: int = 0,
    limit: int = 100,
) -> Page[ChatMessagePublic]:
    """Messages in conversation order (oldest first)."""
    await get_owned_or_raise(db, actor=actor, session_id=session_id)
    statement = select(ChatMessage).where(ChatMessage.session_id == session_id)
    total = (await db.exec(select(func.count()).select_from(statement.subquery()))).one()
    rows = await db.exec(
        statement.order_by(col(ChatMessage.created_at), col(ChatMessage.id))
        .offset(offset)
        .limit(limit)
    )
    return Page[ChatMessagePublic](items=[message_public(m) for m in rows], total=total)


async def latest_messages(
    db: AsyncSession, *, actor: User, session_id: uuid.UUID, limit: int
) -> list[ChatMessagePublic]:
    """The newest ``limit`` messages, in conversation order: what a chat screen shows
    of a long conversation (the first ``limit`` would hide its latest turns)."""
    await get_owned_or_raise(db, actor=actor, session_id=session_id)
    rows = await db.exec(
        select(ChatMessage)
        .where(ChatMessage.session_id == session_id)
        .order_by(col(ChatMessage.created_at).desc(), col(ChatMessage.id).desc())
        .limit(limit)
    )
    return [message_public(m) for m in reversed(rows.all())]


def touch(session: ChatSession) -> None:
    """Mark the session as just active (it sorts first in the list)."""
    now = utcnow()
    session.updated_at = now
    session.last_message_at = now
