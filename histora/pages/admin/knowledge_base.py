"""Admin: one character's knowledge base (upload, documents, progress, test search)."""

from __future__ import annotations

import reflex as rx

from histora.components.admin import admin_nav
from histora.components.characters import portrait
from histora.components.documents import confirm_delete_dialog, document_table, passage_card
from histora.components.layout import loading, page_layout
from histora.components.uploads import drop_zone, upload_outcomes
from histora.pages.admin.knowledge_base_search import KnowledgeBaseSearchState
from histora.pages.admin.knowledge_base_state import KnowledgeBaseState, KnowledgeBaseUploadState
from histora.state.session import SessionState

UPLOAD_ID = "knowledge-base-upload"


def _header() -> rx.Component:
    kb = KnowledgeBaseState.knowledge_base
    return rx.vstack(
        rx.link(
            rx.hstack(rx.icon("arrow-left", size=14), rx.text("All characters", size="2")),
            href="/admin/characters",
        ),
        rx.hstack(
            portrait(kb.portrait, kb.character_name, size="48px"),
            rx.vstack(
                rx.heading(kb.character_name, size="7", data_testid="knowledge-base-heading"),
                rx.text(
                    "Knowledge base · ",
                    KnowledgeBaseState.summary,
                    size="2",
                    color=rx.color("gray", 11),
                    data_testid="knowledge-base-summary",
                ),
                spacing="1",
            ),
            align="center",
            spacing="3",
        ),
        spacing="2",
    )


def _upload() -> rx.Component:
    return rx.vstack(
        drop_zone(
            upload_id=UPLOAD_ID,
            on_drop=KnowledgeBaseUploadState.upload(rx.upload_files_chunk(upload_id=UPLOAD_ID)),
            on_drop_rejected=KnowledgeBaseUploadState.reject_files,
            max_bytes=KnowledgeBaseUploadState.max_bytes,
            busy=KnowledgeBaseUploadState.uploading,
            label="Drop sources here, or click to choose files",
        ),
        upload_outcomes(KnowledgeBaseUploadState.outcomes),
        spacing="2",
        width="100%",
    )


def _documents() -> rx.Component:
    return rx.vstack(
        rx.heading("Documents", size="4", as_="h2"),
        rx.cond(
            KnowledgeBaseState.documents.length() > 0,
            document_table(
                KnowledgeBaseState.documents,
                on_reindex=KnowledgeBaseState.reindex,
                on_delete=KnowledgeBaseState.ask_delete,
            ),
            rx.text(
                "No documents yet. Answers draw only on the character's own knowledge.",
                size="2",
                color=rx.color("gray", 10),
            ),
        ),
        confirm_delete_dialog(
            open_=KnowledgeBaseState.confirm_delete_id != "",
            name=KnowledgeBaseState.confirm_delete_name,
            on_cancel=KnowledgeBaseState.cancel_delete,
            on_confirm=KnowledgeBaseState.confirm_delete,
        ),
        spacing="3",
        width="100%",
    )


def _search() -> rx.Component:
    state = KnowledgeBaseSearchState
    return rx.vstack(
        rx.heading("Test search", size="4", as_="h2"),
        rx.text(
            "See which passages a question would bring up.", size="2", color=rx.color("gray", 11)
        ),
        rx.form(
            rx.hstack(
                rx.input(
                    name="query",
                    placeholder="e.g. What should I do about anger?",
                    max_length=1000,
                    flex="1",
                    aria_label="Search this knowledge base",
                ),
                rx.button(
                    rx.icon("search", size=16),
                    "Search",
                    type="submit",
                    loading=state.searching,
                    data_testid="search-submit",
                ),
                width="100%",
            ),
            on_submit=state.search,
            width="100%",
        ),
        rx.cond(state.error != "", rx.text(state.error, size="2", color=rx.color("red", 11))),
        rx.cond(
            state.searched & (state.hits.length() == 0),
            rx.text("No passage matched closely enough.", size="2", color=rx.color("gray", 10)),
        ),
        rx.foreach(state.hits, passage_card),
        spacing="3",
        width="100%",
    )


def _knowledge_base() -> rx.Component:
    return rx.vstack(
        admin_nav("characters"),
        _header(),
        rx.cond(
            KnowledgeBaseState.error != "",
            rx.callout(KnowledgeBaseState.error, icon="triangle_alert", color_scheme="red"),
        ),
        _upload(),
        _documents(),
        rx.divider(),
        _search(),
        spacing="5",
        width="100%",
    )


def _not_found() -> rx.Component:
    return rx.vstack(
        admin_nav("characters"),
        rx.callout(KnowledgeBaseState.error, icon="triangle_alert", color_scheme="red"),
        rx.link("All characters", href="/admin/characters"),
        spacing="4",
        width="100%",
    )


@rx.page(
    route="/admin/characters/[character_id]",
    title="Knowledge base · Admin · Histora",
    on_load=[
        SessionState.require_admin,
        KnowledgeBaseUploadState.reset_uploads,
        KnowledgeBaseSearchState.reset_search,
        KnowledgeBaseState.load,
    ],
)
def knowledge_base_page() -> rx.Component:
    return page_layout(
        rx.cond(
            SessionState.is_admin & KnowledgeBaseState.knowledge_base,
            _knowledge_base(),
            rx.cond(SessionState.is_admin & KnowledgeBaseState.not_found, _not_found(), loading()),
        )
    )
