"""Source documents: status badges, ingestion progress, document lists, found passages."""

from __future__ import annotations

from collections.abc import Callable

import reflex as rx

from histora.models.documents import DocumentPublic, PassagePublic

EventFactory = Callable[[rx.Var[str]], rx.event.EventSpec]

_STATUS_BADGES = (
    ("queued", "Queued", "gray"),
    ("extracting", "Reading", "blue"),
    ("embedding", "Indexing", "indigo"),
    ("ready", "Ready", "green"),
    ("failed", "Failed", "red"),
)

ONE_LINE = {"white_space": "nowrap", "overflow": "hidden", "text_overflow": "ellipsis"}


def in_progress(document: rx.Var[DocumentPublic]) -> rx.Var[bool]:
    return (document.status != "ready") & (document.status != "failed")


def status_badge(document: rx.Var[DocumentPublic]) -> rx.Component:
    return rx.match(
        document.status,
        *[
            (status, rx.badge(label, color_scheme=color, variant="soft"))
            for status, label, color in _STATUS_BADGES
        ],
        rx.badge(document.status),
    )


def ingest_progress(document: rx.Var[DocumentPublic]) -> rx.Component:
    """The bar while a document is queued, read or indexed; nothing once settled."""
    return rx.cond(
        in_progress(document),
        rx.progress(
            value=(document.progress * 100).to(int),
            max=100,
            size="1",
            aria_label="Processing " + document.filename,
            data_testid="document-progress",
        ),
    )


def size_text(document: rx.Var[DocumentPublic]) -> rx.Var[str]:
    size = document.size_bytes
    return rx.cond(
        size < 1024,
        rx.Var.create(f"{size} bytes"),
        rx.cond(
            size < 1024 * 1024,
            rx.Var.create(f"{size / 1024:.0f} KB"),
            rx.Var.create(f"{size / (1024 * 1024):.1f} MB"),
        ),
    )


def failure_text(document: rx.Var[DocumentPublic]) -> rx.Component:
    return rx.cond(
        document.status == "failed",
        rx.text(
            rx.cond(document.error, document.error, "This document could not be processed."),
            size="1",
            color=rx.color("red", 11),
            data_testid="document-error",
        ),
    )


def document_row(
    document: rx.Var[DocumentPublic], *, on_reindex: EventFactory, on_delete: EventFactory
) -> rx.Component:
    """One row of a knowledge base table (admin)."""
    document_id = document.id.to(str)
    return rx.table.row(
        rx.table.row_header_cell(
            rx.vstack(
                rx.text(document.filename, weight="medium", style={"word_break": "break-word"}),
                failure_text(document),
                spacing="1",
            ),
            min_width="180px",
        ),
        rx.table.cell(
            rx.vstack(status_badge(document), ingest_progress(document), spacing="1"),
            min_width="110px",
            data_testid="document-status",
        ),
        rx.table.cell(rx.badge(document.kind.upper(), variant="outline")),
        rx.table.cell(rx.cond(document.pages, document.pages.to(str), "–")),
        rx.table.cell(document.chunk_count),
        rx.table.cell(size_text(document), white_space="nowrap"),
        rx.table.cell(
            rx.hstack(
                rx.icon_button(
                    rx.icon("refresh-cw", size=14),
                    variant="soft",
                    size="1",
                    disabled=in_progress(document),
                    on_click=on_reindex(document_id),
                    aria_label="Re-index " + document.filename,
                    title="Re-index",
                    data_testid="document-reindex",
                ),
                rx.icon_button(
                    rx.icon("trash-2", size=14),
                    variant="soft",
                    color_scheme="red",
                    size="1",
                    on_click=on_delete(document_id),
                    aria_label="Delete " + document.filename,
                    title="Delete",
                    data_testid="document-delete",
                ),
                spacing="2",
            )
        ),
        data_testid="document-row",
    )


def document_table(
    documents: rx.Var[list[DocumentPublic]], *, on_reindex: EventFactory, on_delete: EventFactory
) -> rx.Component:
    headers = ("Document", "Status", "Kind", "Pages", "Chunks", "Size", "")
    return rx.box(
        rx.table.root(
            rx.table.header(
                rx.table.row(*[rx.table.column_header_cell(header) for header in headers])
            ),
            rx.table.body(
                rx.foreach(
                    documents,
                    lambda doc: document_row(doc, on_reindex=on_reindex, on_delete=on_delete),
                )
            ),
            width="100%",
            variant="surface",
        ),
        width="100%",
        overflow_x="auto",
    )


def document_item(document: rx.Var[DocumentPublic], *, on_delete: EventFactory) -> rx.Component:
    """A compact entry for a narrow list (the chat sidebar)."""
    return rx.vstack(
        rx.hstack(
            rx.icon("file-text", size=14, flex_shrink="0"),
            rx.text(
                document.filename,
                size="1",
                weight="medium",
                style=ONE_LINE,
                flex="1",
                title=document.filename,
            ),
            status_badge(document),
            rx.icon_button(
                rx.icon("x", size=12),
                variant="ghost",
                color_scheme="gray",
                size="1",
                on_click=on_delete(document.id.to(str)),
                aria_label="Remove " + document.filename,
                title="Remove",
                data_testid="document-delete",
            ),
            align="center",
            width="100%",
            spacing="2",
        ),
        ingest_progress(document),
        failure_text(document),
        spacing="1",
        width="100%",
        data_testid="document-row",
    )


def confirm_delete_dialog(
    *,
    open_: rx.Var[bool],
    name: rx.Var[str],
    on_cancel: rx.EventHandler,
    on_confirm: rx.EventHandler,
) -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete this document?"),
            rx.alert_dialog.description(
                "“", name, "” is removed with its passages; answers no longer draw on it."
            ),
            rx.hstack(
                rx.alert_dialog.cancel(
                    rx.button(
                        "Cancel",
                        variant="soft",
                        color_scheme="gray",
                        on_click=on_cancel,
                        auto_focus=True,  # the safe choice first, for Enter and Space
                    )
                ),
                rx.alert_dialog.action(
                    rx.button(
                        "Delete",
                        color_scheme="red",
                        on_click=on_confirm,
                        data_testid="confirm-document-delete",
                    )
                ),
                justify="end",
                spacing="3",
                margin_top="var(--space-4)",
            ),
        ),
        open=open_,
        # Escape (or a click outside) closes it as Cancel does; without this the open
        # state stays with the page, so the dialog would neither close nor take focus.
        on_open_change=on_cancel,
    )


def page_label(page: rx.Var[int | None]) -> rx.Component:
    return rx.cond(page, rx.fragment(", p. ", page.to(str)), rx.fragment())


def passage_card(passage: rx.Var[PassagePublic]) -> rx.Component:
    """A search hit: where it comes from, how well it matched, and the text itself."""
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.text(
                    passage.document_name,
                    page_label(passage.page),
                    size="2",
                    weight="bold",
                    style=ONE_LINE,
                    flex="1",
                ),
                rx.badge(f"score {passage.score:.3f}", variant="soft", color_scheme="gray"),
                align="center",
                width="100%",
            ),
            rx.text(passage.text, size="2", white_space="pre-wrap", color=rx.color("gray", 12)),
            spacing="2",
            width="100%",
        ),
        width="100%",
        data_testid="search-hit",
    )
