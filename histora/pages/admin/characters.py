"""Admin: every character, with the size of its knowledge base."""

from __future__ import annotations

import reflex as rx

from histora.components.admin import admin_nav
from histora.components.characters import portrait
from histora.components.layout import loading, page_layout
from histora.errors import HistoraError
from histora.models.documents import KnowledgeBasePublic
from histora.services import documents as documents_service
from histora.state.session import SessionState, acting


class AdminCharactersState(rx.State):
    knowledge_bases: list[KnowledgeBasePublic] = []
    loaded: bool = False
    error: str = ""

    @rx.event
    async def load(self) -> None:
        try:
            async with acting(self) as (db, actor):
                found = await documents_service.list_knowledge_bases(db, actor=actor)
        except HistoraError as exc:
            self.knowledge_bases, self.error = [], exc.public_message
        else:
            self.knowledge_bases, self.error = found, ""
        self.loaded = True


def _row(kb: rx.Var[KnowledgeBasePublic]) -> rx.Component:
    return rx.table.row(
        rx.table.row_header_cell(
            rx.link(
                rx.hstack(
                    portrait(kb.portrait, kb.character_name, size="32px"),
                    rx.text(kb.character_name, weight="medium"),
                    align="center",
                    spacing="3",
                ),
                href="/admin/characters/" + kb.character_id,
                color="inherit",
                data_testid="knowledge-base-link",
            )
        ),
        rx.table.cell(
            rx.badge(
                kb.character_status,
                color_scheme=rx.cond(kb.character_status == "published", "green", "gray"),
                variant="soft",
            )
        ),
        rx.table.cell(kb.documents),
        rx.table.cell(kb.ready),
    )


@rx.page(
    route="/admin/characters",
    title="Characters · Admin · Histora",
    on_load=[SessionState.require_admin, AdminCharactersState.load],
)
def admin_characters_page() -> rx.Component:
    return page_layout(
        rx.cond(
            SessionState.is_admin & AdminCharactersState.loaded,
            rx.vstack(
                admin_nav("characters"),
                rx.heading("Characters", size="7", data_testid="admin-heading"),
                rx.text(
                    "Open a character to manage the sources its answers draw on.",
                    size="2",
                    color=rx.color("gray", 11),
                ),
                rx.cond(
                    AdminCharactersState.error != "",
                    rx.callout(
                        AdminCharactersState.error, icon="triangle_alert", color_scheme="red"
                    ),
                ),
                rx.box(
                    rx.table.root(
                        rx.table.header(
                            rx.table.row(
                                *[
                                    rx.table.column_header_cell(h)
                                    for h in ("Character", "Status", "Documents", "Ready")
                                ]
                            )
                        ),
                        rx.table.body(rx.foreach(AdminCharactersState.knowledge_bases, _row)),
                        width="100%",
                    ),
                    width="100%",
                    overflow_x="auto",
                ),
                spacing="4",
                width="100%",
            ),
            loading(),
        )
    )
