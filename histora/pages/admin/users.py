"""Admin: the users of the platform."""

from __future__ import annotations

import uuid

import reflex as rx

from histora.components.admin import admin_nav
from histora.components.layout import loading, page_layout
from histora.errors import HistoraError
from histora.models.users import UserPublic
from histora.services import admin as admin_service
from histora.services import auth as auth_service
from histora.state.session import SessionState, acting


class AdminUsersState(rx.State):
    users: list[UserPublic] = []
    total: int = 0
    query: str = ""
    error: str = ""

    async def _load(self) -> None:
        try:
            async with acting(self) as (db, actor):
                page = await admin_service.list_users(db, actor=actor, query=self.query)
        except HistoraError as exc:
            self.users, self.total, self.error = [], 0, exc.public_message
            return
        self.users, self.total, self.error = page.items, page.total, ""

    @rx.event
    async def load(self) -> None:
        await self._load()

    @rx.event
    async def search(self, query: str) -> None:
        self.query = query[:100]
        await self._load()

    @rx.event
    async def set_disabled(self, user_id: str, disabled: bool) -> None:
        try:
            async with acting(self) as (db, actor):
                await auth_service.set_disabled(
                    db, actor=actor, user_id=uuid.UUID(user_id), disabled=disabled
                )
        except HistoraError as exc:
            self.error = exc.public_message
            return
        except ValueError:
            self.error = "No such user."
            return
        await self._load()


def _row(user: rx.Var[UserPublic]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(user.display_name),
        rx.table.cell(user.email),
        rx.table.cell(rx.badge(user.role)),
        rx.table.cell(user.credits),
        rx.table.cell(
            rx.switch(
                checked=~user.disabled,
                on_change=lambda enabled: AdminUsersState.set_disabled(user.id.to(str), ~enabled),
                aria_label="Account enabled",
            )
        ),
    )


@rx.page(
    route="/admin",
    title="Admin · Histora",
    on_load=[SessionState.require_admin, AdminUsersState.load],
)
def admin_page() -> rx.Component:
    return page_layout(
        rx.cond(
            SessionState.is_admin,
            rx.vstack(
                admin_nav("users"),
                rx.heading("Users", size="7", data_testid="admin-heading"),
                rx.input(
                    placeholder="Search by name or email",
                    on_change=AdminUsersState.search.debounce(300),
                    width="320px",
                ),
                rx.cond(
                    AdminUsersState.error != "",
                    rx.callout(AdminUsersState.error, icon="triangle_alert", color_scheme="red"),
                ),
                rx.text(AdminUsersState.total, " users", size="2"),
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            *[
                                rx.table.column_header_cell(h)
                                for h in ("Name", "Email", "Role", "Credits", "Enabled")
                            ]
                        )
                    ),
                    rx.table.body(rx.foreach(AdminUsersState.users, _row)),
                    width="100%",
                ),
                spacing="4",
                width="100%",
            ),
            loading(),
        )
    )
