"""Layout of the chat page: sessions sidebar, conversation, composer, character panel."""

from __future__ import annotations

import reflex as rx

from histora.components.characters import figure_not_found, portrait
from histora.components.chat import draft_bubble, message_bubble
from histora.components.layout import page_layout
from histora.models.chat import ChatSessionPublic
from histora.pages.chat.state import ChatState
from histora.services.chat import MAX_MESSAGE_CHARS


def _session_link(session: rx.Var[ChatSessionPublic]) -> rx.Component:
    active = ChatState.session_id == session.id.to(str)
    return rx.link(
        rx.box(
            rx.text(session.title, size="2", weight="medium", trim="both", truncate=True),
            rx.text(session.preview, size="1", color=rx.color("gray", 10), truncate=True),
            padding="var(--space-2)",
            border_radius="8px",
            background_color=rx.cond(active, rx.color("amber", 3), "transparent"),
            _hover={"background_color": rx.color("gray", 3)},
        ),
        href="/chat/" + ChatState.character.id + "?session=" + session.id.to(str),
        underline="none",
        color="inherit",
        data_testid="session-link",
    )


def _sidebar() -> rx.Component:
    return rx.vstack(
        rx.button(
            rx.icon("plus"),
            "New conversation",
            on_click=ChatState.new_session,
            width="100%",
            variant="soft",
        ),
        rx.foreach(ChatState.sessions, _session_link),
        spacing="1",
        width="100%",
        data_testid="session-list",
    )


def _character_panel() -> rx.Component:
    character = ChatState.character
    return rx.hstack(
        portrait(character.portrait, character.name, size="48px"),
        rx.vstack(
            rx.link(
                rx.heading(character.name, size="4"),
                href="/characters/" + character.id,
                color="inherit",
            ),
            rx.text(character.lifespan, " · ", character.era, size="1", color=rx.color("gray", 10)),
            rx.text(
                "Knows nothing after ",
                character.knowledge_horizon,
                size="1",
                color=rx.color("gray", 10),
            ),
            spacing="0",
        ),
        rx.spacer(),
        rx.flex(
            rx.foreach(character.traits[:3], lambda t: rx.badge(t, variant="soft", radius="full")),
            gap="var(--space-1)",
            display=rx.breakpoints(initial="none", md="flex"),
        ),
        align="center",
        width="100%",
        padding_bottom="var(--space-3)",
        border_bottom=f"1px solid {rx.color('gray', 4)}",
    )


def _starters() -> rx.Component:
    character = ChatState.character
    return rx.vstack(
        rx.text("“", character.opener, "”", size="3", style={"font_style": "italic"}),
        rx.flex(
            rx.foreach(
                character.starter_questions,
                lambda q: rx.button(
                    q,
                    on_click=ChatState.ask(q),
                    variant="surface",
                    radius="full",
                    size="2",
                    data_testid="starter-chip",
                    white_space="normal",
                    height="auto",
                    padding_y="var(--space-1)",
                ),
            ),
            wrap="wrap",
            gap="var(--space-2)",
        ),
        spacing="3",
        padding_y="var(--space-5)",
    )


def _conversation() -> rx.Component:
    return rx.auto_scroll(
        rx.cond((ChatState.messages.length() == 0) & ~ChatState.streaming, _starters()),
        rx.flex(
            rx.foreach(ChatState.messages, message_bubble),
            rx.cond(ChatState.streaming, draft_bubble(ChatState.draft)),
            direction="column",
            gap="var(--space-3)",
        ),
        flex="1",
        min_height="0",
        padding_y="var(--space-3)",
        data_testid="conversation",
    )


def _error() -> rx.Component:
    return rx.cond(
        ChatState.error != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("triangle_alert")),
            rx.callout.text(ChatState.error),
            rx.cond(
                ChatState.can_regenerate,
                rx.button("Retry", size="1", on_click=ChatState.regenerate, data_testid="retry"),
            ),
            color_scheme="red",
            size="1",
            data_testid="chat-error",
        ),
    )


def _composer() -> rx.Component:
    return rx.form(
        rx.hstack(
            rx.text_area(
                name="message",
                placeholder="Ask " + ChatState.character.name + " something…",
                enter_key_submit=True,
                auto_height=True,
                rows="1",
                max_length=MAX_MESSAGE_CHARS,
                width="100%",
                disabled=ChatState.streaming,
                aria_label="Your message",
            ),
            rx.cond(
                ChatState.streaming,
                rx.button(
                    rx.icon("square"),
                    "Stop",
                    type="button",
                    on_click=ChatState.stop,
                    color_scheme="gray",
                    data_testid="stop",
                ),
                rx.button(rx.icon("send"), "Send", type="submit", data_testid="send"),
            ),
            rx.cond(
                ChatState.can_regenerate,
                rx.icon_button(
                    rx.icon("refresh-cw"),
                    type="button",
                    variant="soft",
                    on_click=ChatState.regenerate,
                    aria_label="Regenerate the last reply",
                    data_testid="regenerate",
                ),
            ),
            align="end",
            width="100%",
        ),
        on_submit=ChatState.send,
        reset_on_submit=True,
        width="100%",
    )


def _chat() -> rx.Component:
    return rx.grid(
        rx.box(_sidebar(), display=rx.breakpoints(initial="none", md="block")),
        rx.flex(
            _character_panel(),
            _conversation(),
            _error(),
            _composer(),
            direction="column",
            gap="var(--space-3)",
            height="calc(100vh - 180px)",
            min_height="420px",
        ),
        columns=rx.breakpoints(initial="1", md="240px 1fr"),
        gap="var(--space-5)",
        width="100%",
    )


@rx.page(route="/chat/[character_id]", title="Histora: chat", on_load=ChatState.load)
def chat_page() -> rx.Component:
    return page_layout(
        rx.cond(
            ChatState.character,
            _chat(),
            rx.cond(
                ChatState.not_found,
                figure_not_found(),
                rx.center(rx.spinner(size="3"), padding="var(--space-8)"),
            ),
        )
    )
