"""Reflex event handlers that take an id, called by a stranger and by an anonymous
visitor: denied, nothing changed. A new id-taking handler without an entry fails."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import reflex as rx
from sqlmodel.ext.asyncio.session import AsyncSession

import histora.histora  # noqa: F401 - registers every page and its states
from histora.models import ApiKey, ChatSession, Document, DocumentStatus, Role, User
from histora.pages.admin import AdminUsersState
from histora.pages.admin.knowledge_base_state import KnowledgeBaseState
from histora.pages.chat.documents_state import ChatDocumentsState
from histora.pages.chat.sessions_state import ChatSessionsState
from histora.pages.conversations import ConversationsState
from histora.pages.profile import ProfileState
from histora.services import api_keys as api_keys_service
from histora.services import conversations
from histora.services import documents as documents_service
from tests.conftest import FakeProvidersContainer
from tests.factories import make_user
from tests.support import signed_in_root, substate

ID_PARAMETER_SUFFIXES = ("_id",)


def _id_taking_handlers() -> set[str]:
    found = set()
    pending: list[type[rx.State]] = [rx.State]
    while pending:
        state = pending.pop()
        pending.extend(state.get_substates())
        if not state.__module__.startswith("histora."):
            continue
        for name, handler in state.event_handlers.items():
            params = inspect.signature(handler.fn).parameters
            if any(p.endswith(ID_PARAMETER_SUFFIXES) for p in params):
                found.add(f"{state.__name__}.{name}")
    return found


Attempt = Callable[[rx.State, dict[str, str]], Awaitable[Any]]

MATRIX: dict[str, Attempt] = {
    "ChatSessionsState.archive": lambda root, ids: ChatSessionsState.archive.fn(
        substate(root, ChatSessionsState), ids["session"]
    ),
    "ChatSessionsState.undo_archive": lambda root, ids: ChatSessionsState.undo_archive.fn(
        substate(root, ChatSessionsState), ids["session"], True
    ),
    "ChatSessionsState.ask_delete": lambda root, ids: _ask_then_confirm(root, ids["session"]),
    "ChatSessionsState.ask_rename": lambda root, ids: _rename(root, ids["session"]),
    "ConversationsState.set_archived": lambda root, ids: ConversationsState.set_archived.fn(
        substate(root, ConversationsState), ids["session"], True
    ),
    "ProfileState.revoke_key": lambda root, ids: ProfileState.revoke_key.fn(
        substate(root, ProfileState), ids["key"]
    ),
    "AdminUsersState.set_disabled": lambda root, ids: AdminUsersState.set_disabled.fn(
        substate(root, AdminUsersState), ids["user"], True
    ),
    "KnowledgeBaseState.ask_delete": lambda root, ids: _ask_then_confirm_document(
        root, KnowledgeBaseState, ids["character_document"]
    ),
    "KnowledgeBaseState.reindex": lambda root, ids: KnowledgeBaseState.reindex.fn(
        substate(root, KnowledgeBaseState), ids["character_document"]
    ),
    "ChatDocumentsState.ask_delete": lambda root, ids: _ask_then_confirm_document(
        root, ChatDocumentsState, ids["session_document"]
    ),
}

RENAMED = "Renamed by the caller"
SECRET_NOTES = b"The owner's private notes: the owl of Minerva flies at dusk."
SECRET_NAME = "owner-private-notes.txt"


async def _ask_then_confirm_document(
    root: rx.State, state: type[KnowledgeBaseState | ChatDocumentsState], document_id: str
) -> None:
    handlers = substate(root, state)
    state.ask_delete.fn(handlers, document_id)
    await state.confirm_delete.fn(handlers)


async def _rename(root: rx.State, session_id: str) -> None:
    state = substate(root, ChatSessionsState)
    ChatSessionsState.ask_rename.fn(state, session_id, "anything")
    await ChatSessionsState.confirm_rename.fn(state, {"title": RENAMED})


async def _ask_then_confirm(root: rx.State, session_id: str) -> None:
    state = substate(root, ChatSessionsState)
    await ChatSessionsState.ask_delete.fn(state, session_id)
    await ChatSessionsState.confirm_delete.fn(state)


def test_every_id_taking_handler_has_a_matrix_entry() -> None:
    missing = _id_taking_handlers() - set(MATRIX)
    assert not missing, f"add these handlers to the Reflex authorization matrix: {missing}"


async def _root_as(
    db: AsyncSession, user: User | None, container: FakeProvidersContainer
) -> rx.State:
    return await signed_in_root(db, user, container.settings)


async def _documents(
    db: AsyncSession, container: FakeProvidersContainer, owner: User, session: ChatSession | Any
) -> dict[str, str]:
    """A document in the owner's conversation and one in Socrates' knowledge base, both ready."""
    admin = await make_user(db, role=Role.ADMIN)
    common = {"files": container.file_store, "limits": container.extraction_limits}
    mine = await documents_service.upload_to_session(
        db,
        actor=owner,
        session_id=session.id,
        upload=documents_service.Upload(SECRET_NAME, SECRET_NOTES),
        **common,
    )
    kb = await documents_service.upload_to_character(
        db,
        actor=admin,
        character_id="socrates",
        upload=documents_service.Upload(SECRET_NAME, SECRET_NOTES + b" (knowledge base)"),
        **common,
    )
    for document_id in (mine.id, kb.id):
        row = await db.get(Document, document_id)
        assert row is not None
        row.status = DocumentStatus.READY
        db.add(row)
    await db.commit()
    return {"session_document": str(mine.id), "character_document": str(kb.id)}


@pytest.mark.parametrize("handler", sorted(MATRIX))
@pytest.mark.parametrize("caller", ["stranger", "anonymous"])
async def test_handlers_refuse_other_peoples_objects(
    db: AsyncSession, container: FakeProvidersContainer, handler: str, caller: str
) -> None:
    owner = await make_user(db)
    stranger = await make_user(db)
    session = await conversations.create_session(db, actor=owner, character_id="socrates")
    key, _ = await api_keys_service.create_api_key(db, actor=owner, name="owner key")
    documents = await _documents(db, container, owner, session)
    root = await _root_as(db, stranger if caller == "stranger" else None, container)

    await MATRIX[handler](
        root,
        {"session": str(session.id), "key": str(key.id), "user": str(owner.id), **documents},
    )

    db.expunge_all()
    kept_session = await db.get(ChatSession, session.id)
    kept_key = await db.get(ApiKey, key.id)
    kept_owner = await db.get(User, owner.id)
    assert kept_session is not None and not kept_session.archived
    assert kept_session.title != RENAMED
    assert kept_key is not None and kept_key.revoked_at is None
    assert kept_owner is not None and not kept_owner.disabled
    for document_id in documents.values():
        kept = await db.get(Document, uuid.UUID(document_id))
        assert kept is not None and kept.status == DocumentStatus.READY
    # Denial leaks nothing: no name, no text, no document in any state the caller sees.
    seen = str(root.dict())
    assert SECRET_NAME not in seen and "Minerva" not in seen


async def test_the_owner_can_do_what_strangers_cannot(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    """Control: the same calls by the owner do change things, so denials above are real."""
    owner = await make_user(db)
    session = await conversations.create_session(db, actor=owner, character_id="socrates")
    key, _ = await api_keys_service.create_api_key(db, actor=owner, name="owner key")
    root = await _root_as(db, owner, container)
    ids = {"session": str(session.id), "key": str(key.id), "user": str(owner.id)}
    await MATRIX["ChatSessionsState.archive"](root, ids)
    await MATRIX["ProfileState.revoke_key"](root, ids)
    await MATRIX["ChatSessionsState.ask_rename"](root, ids)
    db.expunge_all()
    archived = await db.get(ChatSession, session.id)
    revoked = await db.get(ApiKey, key.id)
    assert archived is not None and archived.archived and archived.title == RENAMED
    assert revoked is not None and revoked.revoked_at is not None


async def test_owners_and_admins_can_manage_documents(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    """Control for the document handlers: the owner deletes, an admin re-indexes."""
    owner = await make_user(db)
    session = await conversations.create_session(db, actor=owner, character_id="socrates")
    documents = await _documents(db, container, owner, session)
    await MATRIX["ChatDocumentsState.ask_delete"](await _root_as(db, owner, container), documents)
    admin = await make_user(db, role=Role.ADMIN)
    await MATRIX["KnowledgeBaseState.reindex"](await _root_as(db, admin, container), documents)
    db.expunge_all()
    assert await db.get(Document, uuid.UUID(documents["session_document"])) is None
    requeued = await db.get(Document, uuid.UUID(documents["character_document"]))
    assert requeued is not None and requeued.status == DocumentStatus.QUEUED


@pytest.mark.parametrize("caller", ["stranger", "anonymous", "owner"])
async def test_only_the_owner_can_undo_archiving(
    db: AsyncSession, container: FakeProvidersContainer, caller: str
) -> None:
    # The matrix above starts from a conversation in the list; this one is archived.
    owner = await make_user(db)
    session = await conversations.create_session(db, actor=owner, character_id="socrates")
    await conversations.set_archived(db, actor=owner, session_id=session.id, archived=True)
    acting_as = {"stranger": await make_user(db), "anonymous": None, "owner": owner}[caller]
    root = await _root_as(db, acting_as, container)

    await MATRIX["ChatSessionsState.undo_archive"](root, {"session": str(session.id)})

    db.expunge_all()
    kept = await db.get(ChatSession, session.id)
    assert kept is not None and kept.archived == (caller != "owner")
