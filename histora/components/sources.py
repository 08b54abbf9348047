"""The sources under a reply: a chip per passage, the passage itself on click."""

from __future__ import annotations

import reflex as rx

from histora.components.documents import ONE_LINE, page_label
from histora.models.documents import CitationPublic


def is_cited(citation: rx.Var[CitationPublic], content: rx.Var[str]) -> rx.Var[bool]:
    """Whether the reply refers to this source as [n]."""
    return content.contains("[" + citation.n.to(str) + "]")


def _passage(citation: rx.Var[CitationPublic]) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.badge("[", citation.n, "]", variant="solid", color_scheme="amber"),
            rx.text(
                citation.document_name,
                size="2",
                weight="bold",
                style={"word_break": "break-word"},
            ),
            align="center",
            spacing="2",
        ),
        rx.cond(
            citation.page,
            rx.text("Page ", citation.page.to(str), size="1", color=rx.color("gray", 10)),
        ),
        rx.box(
            rx.text(citation.text, size="2", white_space="pre-wrap"),
            max_height="45vh",
            overflow_y="auto",
            padding_left="var(--space-3)",
            border_left=f"3px solid {rx.color('amber', 7)}",
        ),
        spacing="2",
        data_testid="source-passage",
    )


def source_chip(citation: rx.Var[CitationPublic], content: rx.Var[str]) -> rx.Component:
    cited = is_cited(citation, content)
    return rx.popover.root(
        rx.popover.trigger(
            rx.button(
                rx.text.strong("[", citation.n, "]"),
                rx.text.span(citation.document_name, page_label(citation.page), style=ONE_LINE),
                size="1",
                radius="full",
                variant=rx.cond(cited, "solid", "surface"),
                color_scheme=rx.cond(cited, "amber", "gray"),
                max_width="100%",
                title=rx.cond(cited, "Cited in this reply", "Retrieved for this reply"),
                data_testid="source-chip",
                data_cited=rx.cond(cited, "true", "false"),
            )
        ),
        rx.popover.content(
            _passage(citation),
            width="min(460px, 92vw)",
            side="top",
            collision_padding=12,
        ),
    )


def sources_row(citations: rx.Var[list[CitationPublic]], content: rx.Var[str]) -> rx.Component:
    return rx.cond(
        citations.length() > 0,
        rx.flex(
            rx.text("Sources", size="1", weight="bold", color=rx.color("gray", 11)),
            rx.foreach(citations, lambda citation: source_chip(citation, content)),
            wrap="wrap",
            align="center",
            gap="var(--space-2)",
            padding_top="var(--space-2)",
            margin_top="var(--space-2)",
            border_top=f"1px solid {rx.color('gray', 6)}",
            data_testid="sources",
        ),
    )
