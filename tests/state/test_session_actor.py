"""The signed-in user as the pages' event handlers and background tasks read it."""

from __future__ import annotations

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import UnauthorizedError
from histora.models.users import UserPublic
from histora.pages.chat.state import ChatState
from histora.state.session import SessionState, acting, background_actor
from tests.conftest import FakeProvidersContainer
from tests.factories import make_user
from tests.support import signed_in_root, substate


async def test_a_background_task_reads_its_user_and_holds_no_transaction_after(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    # It goes on without the page's state lock, and may wait for it again: a transaction
    # held meanwhile (on SQLite, the database's write lock) would make the page's own
    # events, which hold the lock, wait for the database in turn.
    user = await make_user(db)
    state = substate(await signed_in_root(db, user, container.settings), ChatState)

    async with container.db_session() as fresh:  # the user not yet loaded in it
        actor = await background_actor(state, fresh)
        assert actor.id == user.id
        assert not fresh.in_transaction()


async def test_an_event_handler_keeps_its_user_read_in_its_own_transaction(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    # A send checks the user and saves the question in one transaction (no extra trip).
    user = await make_user(db)
    state = substate(await signed_in_root(db, user, container.settings), ChatState)

    async with acting(state) as (session, actor):
        assert actor.id == user.id
        assert session.in_transaction()


async def test_a_sign_out_in_another_tab_signs_this_one_out_at_its_next_event(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    state = substate(await signed_in_root(db, user, container.settings), ChatState)
    session = await state.get_state(SessionState)
    # Another tab signed out: the refresh token they share is cleared here by its sync,
    # while this tab still holds an access token that has not expired.
    session.refresh_token = ""
    with pytest.raises(UnauthorizedError, match="sign in"):
        async with acting(state):
            pass
    assert session.user is None and not session.signed_in

    # A reload of this tab finds nobody signed in either.
    session.user = UserPublic.model_validate(user, from_attributes=True)
    await SessionState.restore.fn(session)
    assert session.user is None and session.restored
