"""Every conversation of the signed-in user, with every figure, archived ones on request."""

from __future__ import annotations

import reflex as rx

from histora.components.layout import page_layout
from histora.errors import HistoraError
from histora.models.chat import ChatSessionPublic
from histora.services import conversations
from histora.state.session import SessionState, acting

PAGE_SIZE = 200


class ConversationsState(rx.State):
    sessions: list[ChatSessionPublic] = []
    total: int = 0
    show_archived: bool = False
    loaded: bool = False
    error: str = ""

    @rx.var
    def not_shown(self) -> int:
        """Conversations past the first PAGE_SIZE, which the page does not list."""
        return max(0, self.total - len(self.sessions))

    async def _reload(self) -> None:
        try:
            async with acting(self) as (db, actor):
                page = await conversations.list_sessions(
                    db, actor=actor, include_archived=self.show_archived, limit=PAGE_SIZE
                )
        except HistoraError as exc:
            self.error = exc.public_message
            return
        self.sessions, self.total, self.error, self.loaded = page.items, page.total, "", True

    @rx.event
    async def load(self) -> None:
        await self._reload()

    @rx.event
    async def toggle_archived(self, show: bool) -> None:
        self.show_archived = show
        await self._reload()

    @rx.event
    async def set_archived(self, session_id: str, archived: bool) -> None:
        try:
            async with acting(self) as (db, actor):
                await conversations.set_archived(
                    db,
                    actor=actor,
                    session_id=conversations.session_id_from(session_id),
                    archived=archived,
                )
        except HistoraError as exc:
            self.error = exc.public_message
            return
        await self._reload()


def _row(session: rx.Var[ChatSessionPublic]) -> rx.Component:
    session_id = session.id.to(str)
    return rx.hstack(
        rx.link(
            rx.vstack(
                rx.hstack(
                    rx.badge(session.character_name, variant="soft", size="1"),
                    rx.cond(session.archived, rx.badge("Archived", color_scheme="gray", size="1")),
                    spacing="2",
                ),
                rx.text(session.title, size="3", weight="medium", trim="both"),
                rx.text(
                    session.preview,
                    size="2",
                    color=rx.color("gray", 10),
                    style={"white_space": "nowrap", "overflow": "hidden"},
                    text_overflow="ellipsis",
                    max_width="100%",
                ),
                spacing="1",
                min_width="0",
                width="100%",
            ),
            href="/chat/" + session.character_id + "?session=" + session_id,
            underline="none",
            color="inherit",
            flex="1",
            min_width="0",
            data_testid="conversation-link",
        ),
        rx.cond(
            session.archived,
            rx.button(
                "Restore",
                size="1",
                variant="soft",
                on_click=ConversationsState.set_archived(session_id, False),
                data_testid="conversation-restore",
            ),
            rx.button(
                "Archive",
                size="1",
                variant="ghost",
                color_scheme="gray",
                on_click=ConversationsState.set_archived(session_id, True),
                data_testid="conversation-archive",
            ),
        ),
        align="center",
        width="100%",
        padding="var(--space-3)",
        border=f"1px solid {rx.color('gray', 4)}",
        border_radius="10px",
    )


def _list() -> rx.Component:
    return rx.cond(
        ConversationsState.sessions.length() > 0,
        rx.vstack(
            rx.foreach(ConversationsState.sessions, _row),
            rx.cond(
                ConversationsState.not_shown > 0,
                rx.text(
                    f"The {PAGE_SIZE} most recent are shown; ",
                    ConversationsState.not_shown,
                    " older ones are not. Archive some to see them.",
                    size="2",
                    color=rx.color("gray", 11),
                    data_testid="conversations-not-shown",
                ),
            ),
            spacing="2",
            width="100%",
        ),
        rx.cond(
            ConversationsState.loaded,
            rx.vstack(
                rx.text(
                    rx.cond(
                        ConversationsState.show_archived,
                        "You have no conversations yet.",
                        "No conversations here. Archived ones show when you ask for them.",
                    ),
                    color=rx.color("gray", 11),
                ),
                rx.link(rx.button("Pick someone to talk to"), href="/#catalogue"),
                spacing="3",
                align="start",
                data_testid="no-conversations",
            ),
        ),
    )


@rx.page(
    route="/conversations",
    title="Histora: your conversations",
    on_load=[SessionState.require_user, ConversationsState.load],
)
def conversations_page() -> rx.Component:
    return page_layout(
        rx.vstack(
            rx.hstack(
                rx.heading("Your conversations", size="7"),
                rx.spacer(),
                rx.el.label(
                    rx.hstack(
                        rx.switch(
                            checked=ConversationsState.show_archived,
                            on_change=ConversationsState.toggle_archived,
                            data_testid="show-archived",
                        ),
                        rx.text("Show archived", size="2"),
                        align="center",
                        spacing="2",
                    ),
                ),
                align="center",
                width="100%",
                wrap="wrap",
            ),
            rx.cond(
                ConversationsState.error != "",
                rx.callout(ConversationsState.error, icon="triangle_alert", color_scheme="red"),
            ),
            _list(),
            spacing="5",
            width="100%",
        )
    )
