"""The signed-in viewer, shared by every page.

The refresh token lives in the browser (localStorage) so a reload keeps the user
signed in; the access token stays in backend-only state. Page guards here are for
the experience only: every service call re-checks the actor itself.

Every tab of a browser shares that one refresh token but has a backend state of its
own. Refresh tokens rotate on use, and presenting a rotated one is taken for theft
(services.tokens revokes the whole sign-in), so a tab must never keep refreshing
with a token another tab has since rotated: the var is synced, and a new token any
tab writes reaches every other tab's backend state at once. Two tabs that refresh
at the same moment, before that sync arrives, both present the same token; the
short reuse grace in services.tokens covers that case alone.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import AsyncIterator

import reflex as rx
from sqlmodel.ext.asyncio.session import AsyncSession

from histora import deps
from histora.errors import HistoraError, UnauthorizedError
from histora.models import Role, User
from histora.models.users import UserPublic
from histora.services import auth as auth_service
from histora.services import tokens


class SessionState(rx.State):
    # sync: another tab's rotation or sign-out updates this tab's backend copy too.
    refresh_token: str = rx.LocalStorage("", name="histora_refresh_token", sync=True)
    user: UserPublic | None = None
    restored: bool = False
    _access_token: str = ""

    @rx.var
    def signed_in(self) -> bool:
        return self.user is not None

    @rx.var
    def is_admin(self) -> bool:
        return self.user is not None and self.user.role == Role.ADMIN

    def _client_ip(self) -> str:
        return self.router.session.client_ip or "unknown"

    def _remember(self, user: User, pair: tokens.TokenPair) -> None:
        self.user = UserPublic.model_validate(user, from_attributes=True)
        self._access_token = pair.access_token
        self.refresh_token = pair.refresh_token
        self.restored = True

    def _forget(self) -> None:
        self.user, self._access_token, self.refresh_token = None, "", ""

    async def _actor(self, db: AsyncSession) -> User:
        """The signed-in user, re-checked on every call (disabled users are refused)."""
        settings = deps.get_container().settings
        if not self.refresh_token:
            # Signed out, perhaps in another tab (the sync cleared it here): the access
            # token still held would otherwise keep this tab signed in for its lifetime.
            self._forget()
            raise UnauthorizedError("Please sign in to continue.")
        if self._access_token:
            try:
                return await auth_service.authenticate_bearer(
                    db, token=self._access_token, settings=settings
                )
            except UnauthorizedError:
                self._access_token = ""
        try:
            user, pair = await tokens.rotate_refresh_token(
                db,
                refresh_token=self.refresh_token,
                settings=settings,
                ip=self._client_ip(),
                user_agent=self.router.headers.user_agent or None,
            )
        except UnauthorizedError:
            self._forget()
            raise
        self._remember(user, pair)
        return user

    async def _sign_in_as(self, db: AsyncSession, user: User) -> None:
        pair = await tokens.issue_token_pair(
            db,
            user=user,
            settings=deps.get_container().settings,
            ip=self._client_ip(),
            user_agent=self.router.headers.user_agent or None,
        )
        self._remember(user, pair)

    @rx.event
    async def restore(self) -> None:
        """On page load: bring back the session from the stored refresh token."""
        await self._restore()

    async def _restore(self) -> None:
        if not self.refresh_token and (self.user or self._access_token):
            self._forget()  # signed out in another tab
        if self.user is None and self.refresh_token:
            try:
                async with deps.db_session() as db:
                    await self._actor(db)
            except HistoraError:
                self._forget()
        self.restored = True

    @rx.event
    async def sign_out(self) -> rx.event.EventSpec:
        if self.refresh_token:
            async with deps.db_session() as db:
                await tokens.revoke_refresh_token(db, refresh_token=self.refresh_token)
        self._forget()
        return rx.redirect("/")

    def _sign_in_then_back(self) -> str:
        """The sign-in page, coming back to this address (its query too) afterwards."""
        url = self.router.url
        here = f"{url.path}?{url.query}" if url.query else str(url.path)
        return f"/login?next={urllib.parse.quote(here, safe='/')}"

    @rx.event
    async def require_user(self) -> rx.event.EventSpec | None:
        await self._restore()
        if self.user is None:
            return rx.redirect(self._sign_in_then_back())
        return None

    @rx.event
    async def require_admin(self) -> rx.event.EventSpec | None:
        await self._restore()
        if self.user is None:
            return rx.redirect(self._sign_in_then_back())
        if self.user.role != Role.ADMIN:
            return rx.redirect("/")
        return None

    async def _refresh_user(self, db: AsyncSession) -> None:
        user = await self._actor(db)
        self.user = UserPublic.model_validate(user, from_attributes=True)


@contextlib.asynccontextmanager
async def acting(state: rx.State) -> AsyncIterator[tuple[AsyncSession, User]]:
    """A short database session and the signed-in user acting in it, re-checked now.

    For event handlers that hold the state lock; a background task uses
    :func:`background_actor` inside ``async with self`` instead.
    """
    async with deps.db_session() as db:
        yield db, await _signed_in(state, db)


async def background_actor(state: rx.State, db: AsyncSession) -> User:
    """The signed-in user, re-checked now, for a background task inside ``async with
    self``. The read's transaction ends here: the task goes on without the state lock,
    and must hold no transaction (on SQLite, the database's write lock) while it may
    wait for the state again, or for slow work of its own.
    """
    actor = await _signed_in(state, db)
    await db.commit()
    return actor


async def _signed_in(state: rx.State, db: AsyncSession) -> User:
    return await (await state.get_state(SessionState))._actor(db)
