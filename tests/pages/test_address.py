"""The page changes its own address; the state takes it on, and sends nothing back."""

from __future__ import annotations

from typing import Any

from histora.pages.chat.state import ChatState
from histora.state.address import expect_address_query
from tests.support import chat_page_router_data, event_context, on_page, reflex_root, substate


def _chat_on(as_path: str, query: dict[str, str]) -> ChatState:
    root = reflex_root()
    on_page(root, chat_page_router_data(as_path, query))
    return substate(root, ChatState)


def _brings_a_navigation(chat: ChatState, router_data: dict[str, Any]) -> bool:
    """Whether Reflex, given this next event, would resend router vars (as it does)."""
    root = chat._get_root_state()
    root._clean()
    root._update_router_vars(router_data, root.router_data)
    return bool(root.get_delta())


def test_the_address_the_page_sets_itself_is_no_navigation_on_the_next_event() -> None:
    opened = chat_page_router_data("/chat/socrates?starter=1", {"starter": "1"})
    chat = _chat_on("/chat/socrates?starter=1", {"starter": "1"})
    with event_context(opened) as event:
        expect_address_query(chat, {"session": "0f0e"})
        # A reply's stream, which this event goes on to, reads the new address too.
        assert event.router_data["asPath"] == "/chat/socrates?session=0f0e"
    assert dict(chat.router.url.query_parameters) == {"session": "0f0e"}
    assert chat.router.url.path == "/chat/socrates"
    assert chat._get_root_state().get_delta() == {}  # the browser has it already

    # The question that follows, from the address the browser shows now.
    following = chat_page_router_data("/chat/socrates?session=0f0e", {"session": "0f0e"})
    assert not _brings_a_navigation(chat, following)


def test_without_it_the_next_event_resends_the_router() -> None:
    chat = _chat_on("/chat/socrates", {})
    following = chat_page_router_data("/chat/socrates?session=0f0e", {"session": "0f0e"})
    assert _brings_a_navigation(chat, following)


def test_an_address_the_browser_did_not_take_is_a_navigation_again() -> None:
    """Should the browser not change its address, its next event puts the state back."""
    chat = _chat_on("/chat/socrates", {})
    with event_context(chat_page_router_data("/chat/socrates", {})):
        expect_address_query(chat, {"session": "0f0e"})
    unchanged = chat_page_router_data("/chat/socrates", {})
    assert _brings_a_navigation(chat, unchanged)
    root = chat._get_root_state()
    root.router_data = root._update_router_vars(unchanged, root.router_data)
    assert dict(chat.router.url.query_parameters) == {}


def test_from_outside_an_event_the_shared_root_context_is_left_alone() -> None:
    """An upload runs in Reflex's root context, whose routing data (none) every context
    made from it shares: the state still expects the address, the context is untouched."""
    chat = _chat_on("/chat/socrates", {})
    with event_context({}) as root_context:
        expect_address_query(chat, {"session": "0f0e"})
        assert root_context.router_data == {}
    assert dict(chat.router.url.query_parameters) == {"session": "0f0e"}
    following = chat_page_router_data("/chat/socrates?session=0f0e", {"session": "0f0e"})
    assert not _brings_a_navigation(chat, following)
