"""Reflex event handlers that take an id, called by a stranger and by an anonymous
visitor: denied, nothing changed. A new id-taking handler without an entry fails."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import reflex as rx
from sqlmodel.ext.asyncio.session import AsyncSession

import histora.histora  # noqa: F401 - registers every page and its states
from histora.models import ApiKey, ChatSession, User
from histora.pages.admin import AdminUsersState
from histora.pages.chat.sessions_state import ChatSessionsState
from histora.pages.profile import ProfileState
from histora.services import api_keys as api_keys_service
from histora.services import conversations, tokens
from histora.state.session import SessionState
from tests.conftest import FakeProvidersContainer
from tests.factories import make_user

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
        root.get_substate(ChatSessionsState.get_full_name().split(".")[1:]), ids["session"]
    ),
    "ChatSessionsState.ask_delete": lambda root, ids: _ask_then_confirm(root, ids["session"]),
    "ProfileState.revoke_key": lambda root, ids: ProfileState.revoke_key.fn(
        root.get_substate(ProfileState.get_full_name().split(".")[1:]), ids["key"]
    ),
    "AdminUsersState.set_disabled": lambda root, ids: AdminUsersState.set_disabled.fn(
        root.get_substate(AdminUsersState.get_full_name().split(".")[1:]), ids["user"], True
    ),
}


async def _ask_then_confirm(root: rx.State, session_id: str) -> None:
    state = root.get_substate(ChatSessionsState.get_full_name().split(".")[1:])
    ChatSessionsState.ask_delete.fn(state, session_id)
    await ChatSessionsState.confirm_delete.fn(state)


def test_every_id_taking_handler_has_a_matrix_entry() -> None:
    missing = _id_taking_handlers() - set(MATRIX)
    assert not missing, f"add these handlers to the Reflex authorization matrix: {missing}"


async def _root_as(
    db: AsyncSession, user: User | None, container: FakeProvidersContainer
) -> rx.State:
    root = rx.State(_reflex_internal_init=True)  # type: ignore[call-arg]
    session = root.get_substate(SessionState.get_full_name().split(".")[1:])
    if user is not None:
        pair = await tokens.issue_token_pair(db, user=user, settings=container.settings)
        session._access_token = pair.access_token
    return root


@pytest.mark.parametrize("handler", sorted(MATRIX))
@pytest.mark.parametrize("caller", ["stranger", "anonymous"])
async def test_handlers_refuse_other_peoples_objects(
    db: AsyncSession, container: FakeProvidersContainer, handler: str, caller: str
) -> None:
    owner = await make_user(db)
    stranger = await make_user(db)
    session = await conversations.create_session(db, actor=owner, character_id="socrates")
    key, _ = await api_keys_service.create_api_key(db, actor=owner, name="owner key")
    root = await _root_as(db, stranger if caller == "stranger" else None, container)

    await MATRIX[handler](
        root, {"session": str(session.id), "key": str(key.id), "user": str(owner.id)}
    )

    db.expunge_all()
    kept_session = await db.get(ChatSession, session.id)
    kept_key = await db.get(ApiKey, key.id)
    kept_owner = await db.get(User, owner.id)
    assert kept_session is not None and not kept_session.archived
    assert kept_key is not None and kept_key.revoked_at is None
    assert kept_owner is not None and not kept_owner.disabled


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
    db.expunge_all()
    archived = await db.get(ChatSession, session.id)
    revoked = await db.get(ApiKey, key.id)
    assert archived is not None and archived.archived
    assert revoked is not None and revoked.revoked_at is not None
