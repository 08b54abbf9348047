"""Layout of the chat page: sessions sidebar, conversation, composer, character panel."""

from __future__ import annotations

import functools
import operator

import reflex as rx

from histora.components.characters import figure_not_found, portrait
from histora.components.chat import draft_bubble, message_bubble
from histora.components.documents import confirm_delete_dialog, document_item
from histora.components.layout import focus_script, loading, page_layout, titled
from histora.components.uploads import drop_zone, upload_outcomes
from histora.models.chat import SessionLink
from histora.pages.chat.address import conversation_address
from histora.pages.chat.documents_state import ChatDocumentsState, ChatUploadState
from histora.pages.chat.draft import ChatDraft, draft_text
from histora.pages.chat.sessions_state import ChatSessionsState
from histora.pages.chat.state import (
    ADDED_NAMES,
    COMPOSER_ID,
    CONVERSATION_END,
    ChatState,
    can_continue,
    can_regenerate,
    conversation_is_empty,
)
from histora.services.conversations import TITLE_MAX_LENGTH
from histora.state.session import SessionState

UPLOAD_ID = "chat-documents-upload"
ONE_LINE = {"white_space": "nowrap", "overflow": "hidden", "text_overflow": "ellipsis"}
# Rename and Delete open a dialog from the menu, which must keep the focus. The menu
# gives the focus back to its button once it has closed, in a timer that may run after
# the dialog has opened (it opens when the server answers): those two items mark that
# they are opening one, and the menu then leaves the focus where the dialog put it.
# (Escape or Archive still hand the focus back to the menu's button.)
_OPENS_A_DIALOG = rx.vars.FunctionStringVar.create(
    "() => { window.historaMenuOpensDialog = true; }"
)
_UNLESS_A_DIALOG_OPENS = rx.vars.FunctionStringVar.create(
    "(event) => { if (window.historaMenuOpensDialog) { "
    "window.historaMenuOpensDialog = false; event.preventDefault(); } }"
)
# A closing dialog would hand the focus back to the menu item that opened it, which is
# gone; the composer is where the user goes on from.
_FOCUS_THE_COMPOSER = rx.vars.FunctionStringVar.create(
    f"(event) => {{ event.preventDefault(); {focus_script(COMPOSER_ID)} }}"
)


def _focus_composer() -> rx.event.EventSpec:
    """In the browser, after the event it follows: the button clicked (Send, Stop,
    Regenerate, Retry, a starter) disappears, and the focus with it; the composer keeps
    it through the reply, for the next question. Once the reply has begun the composer
    is read-only, so focusing it does not raise a phone's keyboard over the reply."""
    return rx.set_focus(COMPOSER_ID)


def _ask_and_follow(handler: rx.event.EventHandler) -> list[rx.event.EventType[()]]:
    """``handler`` (a new question), then, in the browser with no round trip: the view
    scrolled down to it and its reply (it may be sent from higher up in a long
    conversation), and the focus back in the composer."""
    return [handler, rx.scroll_to(CONVERSATION_END, align_to_top=False), _focus_composer()]


def _session_menu(session: rx.Var[SessionLink]) -> rx.Component:
    return rx.menu.root(
        rx.menu.trigger(
            rx.icon_button(
                rx.icon("ellipsis", size=14),
                variant="ghost",
                size="1",
                aria_label="Conversation actions",
                data_testid="session-menu",
            )
        ),
        rx.menu.content(
            rx.menu.item(
                "Rename…",
                on_click=[_OPENS_A_DIALOG, ChatSessionsState.ask_rename(session.id, session.title)],
                data_testid="session-rename",
            ),
            rx.menu.item("Archive", on_click=ChatSessionsState.archive(session.id)),
            rx.menu.item(
                "Delete…",
                color="red",
                on_click=[_OPENS_A_DIALOG, ChatSessionsState.ask_delete(session.id)],
                data_testid="session-delete",
            ),
            # Gone at once when closed: fading out under a dialog it opened, the menu took
            # the focus back when the pointer left its item.
            style={"&[data-state='closed']": {"animation": "none"}},
            on_close_auto_focus=_UNLESS_A_DIALOG_OPENS,
        ),
    )


def _session_link(session: rx.Var[SessionLink], *, in_popover: bool) -> rx.Component:
    active = ChatState.session_id == session.id
    link = rx.link(
        rx.box(
            rx.text(session.title, size="2", weight="medium", style=ONE_LINE),
            min_width="0",
        ),
        href="/chat/" + ChatState.character.id + "?session=" + session.id,
        underline="none",
        color="inherit",
        flex="1",
        min_width="0",
        data_testid="session-link",
    )
    return rx.hstack(
        # On a phone the list is a pop-up, which picking a conversation should close.
        rx.popover.close(link) if in_popover else link,
        _session_menu(session),
        align="center",
        width="100%",
        padding="var(--space-2)",
        border_radius="8px",
        background_color=rx.cond(active, rx.color("amber", 3), "transparent"),
        _hover={"background_color": rx.color("gray", 3)},
    )


def _session_list(*, in_popover: bool = False) -> rx.Component:
    new_button = rx.button(
        rx.icon("plus"),
        "New conversation",
        on_click=ChatState.new_session,
        width="100%",
        variant="soft",
    )
    return rx.vstack(
        rx.popover.close(new_button) if in_popover else new_button,
        rx.foreach(ChatState.newer_sessions, lambda s: _session_link(s, in_popover=in_popover)),
        rx.foreach(ChatState.sessions, lambda s: _session_link(s, in_popover=in_popover)),
        spacing="1",
        width="100%",
        data_testid="session-list",
    )


def _documents_panel() -> rx.Component:
    """The conversation's own documents, and the control that adds more."""
    return rx.vstack(
        rx.hstack(
            rx.icon("paperclip", size=14),
            rx.text("Documents in this conversation", size="1", weight="bold"),
            align="center",
            spacing="2",
        ),
        rx.foreach(
            ChatDocumentsState.documents,
            lambda document: document_item(document, on_delete=ChatDocumentsState.ask_delete),
        ),
        drop_zone(
            upload_id=UPLOAD_ID,
            on_drop=ChatUploadState.upload(rx.upload_files_chunk(upload_id=UPLOAD_ID)),
            on_drop_rejected=ChatUploadState.reject_files,
            max_bytes=ChatUploadState.max_bytes,
            busy=ChatUploadState.uploading,
            label="Add a document to this conversation",
            compact=True,
        ),
        upload_outcomes(ChatUploadState.outcomes),
        rx.cond(
            ChatDocumentsState.error != "",
            rx.text(ChatDocumentsState.error, size="1", color=rx.color("red", 11)),
        ),
        spacing="2",
        width="100%",
        data_testid="chat-documents",
    )


def _sidebar() -> rx.Component:
    return rx.vstack(
        _session_list(),
        rx.divider(),
        _documents_panel(),
        spacing="4",
        width="100%",
        display=rx.breakpoints(initial="none", md="flex"),
    )


def _phone_bar() -> rx.Component:
    """On a phone, conversations and documents sit behind buttons instead of a sidebar."""
    return rx.hstack(
        rx.popover.root(
            rx.popover.trigger(
                rx.button(rx.icon("messages-square"), "Conversations", variant="soft", size="2")
            ),
            rx.popover.content(
                _session_list(in_popover=True), width="300px", max_height="70vh", overflow_y="auto"
            ),
        ),
        rx.popover.root(
            rx.popover.trigger(
                rx.button(
                    rx.icon("paperclip"),
                    "Documents",
                    rx.cond(
                        ChatDocumentsState.documents.length() > 0,
                        rx.badge(ChatDocumentsState.documents.length(), radius="full"),
                    ),
                    variant="soft",
                    size="2",
                    data_testid="phone-documents",
                )
            ),
            rx.popover.content(
                _documents_panel(), width="300px", max_height="70vh", overflow_y="auto"
            ),
        ),
        spacing="2",
        display=rx.breakpoints(initial="flex", md="none"),
    )


def _rename_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Rename this conversation"),
            rx.form(
                rx.vstack(
                    rx.input(
                        name="title",
                        default_value=ChatSessionsState.rename_title,
                        max_length=TITLE_MAX_LENGTH,
                        required=True,
                        auto_focus=True,
                        width="100%",
                        aria_label="Conversation title",
                        data_testid="rename-title",
                    ),
                    rx.cond(
                        ChatSessionsState.rename_error != "",
                        rx.text(
                            ChatSessionsState.rename_error, size="2", color=rx.color("red", 11)
                        ),
                    ),
                    rx.hstack(
                        rx.button(
                            "Cancel",
                            type="button",
                            variant="soft",
                            color_scheme="gray",
                            on_click=ChatSessionsState.cancel_rename,
                        ),
                        rx.button("Save", type="submit", data_testid="confirm-rename"),
                        justify="end",
                        spacing="3",
                        width="100%",
                    ),
                    spacing="3",
                ),
                on_submit=ChatSessionsState.confirm_rename,
                # A fresh form each time the dialog opens, so the input shows that title.
                key=ChatSessionsState.rename_id,
            ),
            on_close_auto_focus=_FOCUS_THE_COMPOSER,
        ),
        open=ChatSessionsState.rename_id != "",
        on_open_change=ChatSessionsState.rename_open_changed,  # Escape, or a click outside
    )


def _delete_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete this conversation?"),
            rx.alert_dialog.description(
                rx.cond(
                    ChatSessionsState.confirm_delete_title != "",
                    rx.fragment("“", ChatSessionsState.confirm_delete_title, "” and its"),
                    "Its",
                ),
                " messages are deleted for good.",
                data_testid="delete-conversation-description",
            ),
            rx.hstack(
                rx.alert_dialog.cancel(
                    rx.button(
                        "Cancel",
                        variant="soft",
                        color_scheme="gray",
                        on_click=ChatSessionsState.cancel_delete,
                        auto_focus=True,  # the safe choice first, for Enter and Space
                    )
                ),
                rx.alert_dialog.action(
                    rx.button(
                        "Delete",
                        color_scheme="red",
                        on_click=ChatSessionsState.confirm_delete,
                        data_testid="confirm-delete",
                    )
                ),
                justify="end",
                spacing="3",
                margin_top="var(--space-4)",
            ),
            on_close_auto_focus=_FOCUS_THE_COMPOSER,
        ),
        open=ChatSessionsState.confirm_delete_id != "",
        on_open_change=ChatSessionsState.delete_open_changed,  # Escape
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
                    on_click=[ChatState.ask(q), _focus_composer()],
                    variant="surface",
                    radius="full",
                    size="2",
                    data_testid="starter-chip",
                    max_width="100%",
                    style={
                        "white_space": "normal",
                        "height": "auto",
                        "text_align": "left",
                        "padding_top": "var(--space-1)",
                        "padding_bottom": "var(--space-1)",
                    },
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
        rx.cond(conversation_is_empty() & ~ChatState.streaming, _starters()),
        rx.flex(
            # One list in the browser: the opened messages and each added list, joined.
            rx.foreach(
                functools.reduce(
                    operator.add, (getattr(ChatState, name) for name in ("messages", *ADDED_NAMES))
                ),
                message_bubble,
            ),
            rx.cond(
                ChatState.streaming,
                draft_bubble(draft_text(), ChatDraft.sources),
            ),
            rx.box(id=CONVERSATION_END),
            direction="column",
            gap="var(--space-3)",
        ),
        flex="1",
        min_height="0",
        padding_y="var(--space-3)",
        data_testid="conversation",
    )


def _archived_note() -> rx.Component:
    return rx.cond(
        ChatState.archived,
        rx.callout.root(
            rx.callout.icon(rx.icon("archive")),
            rx.callout.text("This conversation is archived, so it is not in your list."),
            rx.box(
                rx.button("Restore", size="1", variant="soft", on_click=ChatState.restore),
            ),
            color_scheme="gray",
            size="1",
            data_testid="archived-note",
        ),
    )


def _error() -> rx.Component:
    return rx.cond(
        ChatState.error != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("triangle_alert")),
            rx.callout.text(ChatState.error),
            rx.cond(
                ChatState.can_retry,
                rx.box(
                    rx.button(
                        "Retry",
                        size="1",
                        on_click=[ChatState.regenerate, _focus_composer()],
                        data_testid="retry",
                    )
                ),
            ),
            color_scheme="red",
            size="1",
            data_testid="chat-error",
        ),
    )


def _composer() -> rx.Component:
    return rx.form(
        rx.flex(
            rx.text_area(
                id=COMPOSER_ID,
                name="message",
                placeholder=rx.cond(
                    ChatState.streaming,
                    ChatState.character.name + " is answering…",
                    "Ask " + ChatState.character.name + " something…",
                ),
                default_value=ChatState.prefill,
                enter_key_submit=~ChatState.streaming,
                auto_height=True,
                # Sized to its text by the browser too, where it can: a question put in
                # the composer by the page is sized before anyone types. (Radix wraps
                # the textarea in a box of its own, which takes the other styles.)
                style={"& textarea": {"field_sizing": "content"}},
                auto_focus=True,
                rows="1",
                # No max_length: the browser would cut a long paste silently; the send
                # is refused with the limit instead, and the text given back.
                max_height="40vh",
                overflow_y="auto",
                # Grows into the row; narrower than this (a phone, with Continue and
                # Regenerate shown), the buttons wrap onto a line of their own below.
                flex="1 1 240px",
                # Read-only, not disabled, while a reply comes: a disabled box loses the
                # focus, which would then have to be given back from the server.
                read_only=ChatState.streaming,
                aria_label="Your message",
            ),
            rx.cond(
                ChatState.streaming,
                rx.button(
                    rx.icon("square"),
                    "Stop",
                    type="button",
                    on_click=[ChatState.stop, _focus_composer()],
                    color_scheme="red",
                    variant="soft",
                    data_testid="stop",
                ),
                rx.button(
                    rx.icon("send"),
                    "Send",
                    type="submit",
                    data_testid="send",
                ),
            ),
            rx.cond(
                can_continue(),
                rx.button(
                    rx.icon("chevrons-right"),
                    "Continue",
                    type="button",
                    variant="soft",
                    aria_label="Continue the reply",
                    on_click=_ask_and_follow(ChatState.continue_reply),
                    title="Ask for the rest of the reply",
                    data_testid="continue",
                ),
            ),
            rx.cond(
                can_regenerate(),
                rx.icon_button(
                    rx.icon("refresh-cw"),
                    type="button",
                    variant="soft",
                    on_click=[ChatState.regenerate, _focus_composer()],
                    aria_label="Regenerate the last reply",
                    data_testid="regenerate",
                ),
            ),
            align="end",
            justify="end",
            wrap="wrap",
            gap="var(--space-3)",
            width="100%",
        ),
        on_submit=_ask_and_follow(ChatState.send),
        reset_on_submit=True,
        width="100%",
        # Remounted, message box and all, with the prefill when the page puts a question
        # in the composer (a starter link, or a send that was refused and is given
        # back). The whole form: its box resizes on the form's reset, and a form kept
        # across a remount would resize the box it first had, and leave the new one tall.
        key=ChatState.composer_version.to_string(),
    )


def _chat() -> rx.Component:
    return rx.grid(
        _sidebar(),
        rx.flex(
            _phone_bar(),
            _character_panel(),
            _archived_note(),
            _conversation(),
            _error(),
            _composer(),
            _delete_dialog(),
            _rename_dialog(),
            conversation_address(),
            confirm_delete_dialog(
                open_=ChatDocumentsState.confirm_delete_id != "",
                name=ChatDocumentsState.confirm_delete_name,
                on_cancel=ChatDocumentsState.cancel_delete,
                on_confirm=ChatDocumentsState.confirm_delete,
            ),
            direction="column",
            gap="var(--space-3)",
            min_width="0",
            height="calc(100vh - 180px)",
            min_height="420px",
        ),
        # minmax(0, …): the conversation column never grows past the page for a wide child.
        columns=rx.breakpoints(initial="minmax(0, 1fr)", md="240px minmax(0, 1fr)"),
        gap="var(--space-5)",
        width="100%",
    )


@rx.page(
    route="/chat/[character_id]",
    title=titled(ChatState.character.name),
    on_load=[
        SessionState.require_user,
        ChatState.load,
        ChatUploadState.reset_uploads,
        ChatDocumentsState.load,
    ],
)
def chat_page() -> rx.Component:
    return page_layout(
        rx.cond(
            ChatState.character,
            _chat(),
            rx.cond(ChatState.not_found, figure_not_found(), loading()),
        ),
        # Past the navigation and the list of conversations, to the message box.
        skip_label="Skip to the message box",
        skip_to=COMPOSER_ID,
    )
