"""The page changes its own address; the state takes it on, and sends nothing back."""

from __future__ import annotations

import json
from typing import Any

from histora.pages.chat.address import HOOK, HOOK_CODE
from histora.pages.chat.state import ChatState
from histora.state.address import expect_address_query
from tests.support import (
    chat_page_router_data,
    event_context,
    on_page,
    reflex_root,
    run_in_node,
    substate,
)


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


# The page's address hook, run in Node with React's two hooks as React runs them: a ref
# kept across renders, an effect run after each render whose dependencies changed.
_HOOK_HARNESS = """
let href, replaced;
globalThis.window = {
  location: { get href() { return href; } },
  history: {
    state: { kept: true },
    replaceState(state, _title, url) {
      replaced.push({ url, kept: state === window.history.state });
      href = new URL(url, href).href;
    },
  },
};
function visit(start, renders) {
  href = new URL(start, "http://histora.test").href;
  replaced = [];
  const refs = [], deps = [];
  const after = renders.map((args) => {
    let ref = 0, effect = 0;
    globalThis.useRef = (initial) => (refs[ref] ??= { current: initial }, refs[ref++]);
    globalThis.useEffect = (run, next) => {
      const before = deps[effect];
      deps[effect++] = next;
      if (!before || next.some((value, k) => !Object.is(value, before[k]))) run();
    };
    %(hook)s(...args);
    return replaced.map((call) => call.url);
  });
  const url = new URL(href);
  return { after, address: url.pathname + url.search, kept: replaced.every((c) => c.kept) };
}
"""


def _visits(*visits: tuple[str, list[tuple[str, str, bool]]]) -> list[dict[str, Any]]:
    """For each visit (the address it starts at, then the hook's arguments on each
    render: session id, figure id, hydrated): the addresses set so far after each
    render, the address at the end, and whether the history entry's state was kept."""
    script = (
        HOOK_CODE
        + _HOOK_HARNESS % {"hook": HOOK}
        + f"console.log(JSON.stringify({json.dumps(visits)}.map(([s, r]) => visit(s, r))));"
    )
    return list(run_in_node(script))


def test_the_browser_shows_a_conversation_started_on_the_page() -> None:
    started, elsewhere = _visits(
        (
            "/chat/socrates?starter=1",
            [("", "socrates", True), ("s1", "socrates", True), ("s1", "socrates", True)],
        ),
        # The browser moved on to another figure's page before the conversation came.
        ("/chat/plato", [("", "socrates", True), ("s1", "socrates", True)]),
    )
    # Once: the next render, with the same conversation, leaves the address alone.
    assert started["after"] == [[], ["/chat/socrates?session=s1"], ["/chat/socrates?session=s1"]]
    assert started["address"] == "/chat/socrates?session=s1" and started["kept"]
    assert elsewhere == {"after": [[], []], "address": "/chat/plato", "kept": True}


def test_while_the_page_hydrates_its_conversation_does_not_move_the_address() -> None:
    sent_at_once, reloaded = _visits(
        # A question sent before hydration ended: the address follows once it has.
        (
            "/chat/socrates",
            [("", "socrates", False), ("s1", "socrates", False), ("s1", "socrates", True)],
        ),
        # The tab's state from before arrives (conversation B) while the page hydrates,
        # then the page's load opens the conversation its address names (C).
        (
            "/chat/socrates?session=C",
            [("", "socrates", False), ("B", "socrates", False), ("C", "socrates", True)],
        ),
    )
    assert sent_at_once["after"] == [[], [], ["/chat/socrates?session=s1"]]
    assert reloaded == {"after": [[], [], []], "address": "/chat/socrates?session=C", "kept": True}
