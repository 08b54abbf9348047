"""Chat pieces: message bubbles (safe markdown), the draft bubble, status notes."""

from __future__ import annotations

import reflex as rx

from histora.components.sources import sources_row
from histora.models.chat import CUT_SHORT, ChatBubble
from histora.models.documents import CitationPublic

# Inside a bubble: wide tables and code scroll on their own instead of widening the page,
# and table cells are told apart.
_MARKDOWN_STYLE = {
    "& table": {"display": "block", "overflow_x": "auto", "border_collapse": "collapse"},
    "& th, & td": {
        "border": f"1px solid {rx.color('gray', 7)}",
        "padding": "var(--space-1) var(--space-2)",
        "text_align": "left",
    },
    "& pre": {"overflow_x": "auto", "max_width": "100%"},
    # A quoted passage (figures quote often) stands apart from the reply's own words.
    "& blockquote": {
        "border_left": f"3px solid {rx.color('amber', 7)}",
        "padding_left": "var(--space-3)",
        "margin": "var(--space-2) 0",
        "color": rx.color("gray", 11),
        "font_style": "italic",
    },
}


def _new_tab_link(text: object, **props: object) -> rx.Component:
    # A link in a reply opens beside the conversation instead of leaving it. Its address
    # has already been through react-markdown's filter (no javascript: or data: links).
    return rx.link(text, is_external=True, rel="noopener noreferrer", **props)


def _image_as_link(*_children: object, **_props: object) -> rx.Component:
    # An image in a reply is shown as a link to it, never fetched by itself: a reply can
    # be steered by a document's text, and an image address that carries words of the
    # conversation would send them to its server the moment the reply is shown. The
    # link's title shows the address before it is followed. An address react-markdown
    # refused (javascript:, data:) arrives empty and leaves only the text.
    src = rx.Var("props?.src", _var_type=str)
    label = rx.Var("(props?.alt || 'Image')", _var_type=str)
    # The image's own attributes are spread on this root: a span, which fetches nothing
    # and, unlike a fragment, takes them without a warning.
    return rx.el.span(
        rx.cond(
            src,
            rx.link(
                rx.icon("image", size=14, display="inline", vertical_align="middle"),
                " ",
                label,
                href=src,
                title=src,
                is_external=True,
                rel="noopener noreferrer",
                data_testid="reply-image-link",
            ),
            rx.text(label, as_="span"),
        )
    )


@rx.memo
def safe_markdown(text: rx.Var[str]) -> rx.Component:
    """Markdown that cannot run scripts, as a component of its own.

    Its own component because react-markdown's component map is built by a function
    that calls a React hook (the code blocks' colour mode), and Reflex calls it where
    the markdown is drawn: inlined in a page's list or condition, that hook would be
    called a varying number of times per render, which React reports as a change in
    the order of hooks and which can lose other hooks' state.
    """
    # use_raw=False: model output is untrusted, raw HTML in it must never render.
    return rx.markdown(
        text,
        use_raw=False,
        component_map={"a": _new_tab_link, "img": _image_as_link},
        class_name="chat-markdown",
        style=_MARKDOWN_STYLE,
    )


def _bubble(*children: rx.Component, mine: bool | rx.Var[bool], test_id: str) -> rx.Component:
    return rx.box(
        *children,
        background_color=rx.cond(mine, rx.color("amber", 4), rx.color("gray", 3)),
        padding_x="var(--space-4)",
        padding_y="var(--space-2)",
        border_radius="14px",
        max_width=rx.breakpoints(initial="92%", md="78%"),
        # A long word or address wraps inside the bubble instead of widening the page.
        min_width="0",
        overflow_wrap="anywhere",
        align_self=rx.cond(mine, "flex-end", "flex-start"),
        data_testid=test_id,
    )


def _note(text: str, *, color: rx.Color, test_id: str) -> rx.Component:
    return rx.text(text, size="1", color=color, data_testid=f"{test_id}-note")


def _status_note(message: rx.Var[ChatBubble]) -> rx.Component:
    quiet = rx.color("gray", 10)
    return rx.match(
        message.status,
        ("stopped", _note("Stopped", color=quiet, test_id="stopped")),
        (
            CUT_SHORT,
            _note("Cut off at the length limit for a reply.", color=quiet, test_id="cut-short"),
        ),
        # Opened while another tab or device is still receiving it; the page shows the
        # reply once it is saved (ChatState.follow_reply).
        (
            "streaming",
            _note("Still being written…", color=quiet, test_id="streaming"),
        ),
        (
            "failed",
            _note(
                "This reply failed before it finished.",
                color=rx.color("red", 11),
                test_id="failed",
            ),
        ),
        rx.fragment(),
    )


def message_bubble(message: rx.Var[ChatBubble]) -> rx.Component:
    mine = message.role == "user"
    return _bubble(
        rx.cond(
            mine,
            rx.text(message.content, white_space="pre-wrap"),
            safe_markdown(text=message.content),
        ),
        _status_note(message),
        rx.cond(~mine, sources_row(message.citations, message.content)),
        mine=mine,
        test_id=rx.cond(mine, "user-message", "assistant-message"),
    )


def draft_bubble(draft: rx.Var[str], sources: rx.Var[list[CitationPublic]]) -> rx.Component:
    return _bubble(
        rx.cond(
            draft == "",
            rx.hstack(rx.spinner(size="1"), rx.text("Thinking…", size="2"), align="center"),
            safe_markdown(text=draft),
        ),
        sources_row(sources, draft),
        mine=False,
        test_id="draft-message",
    )
