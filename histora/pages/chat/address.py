"""The address bar follows the conversation on screen, in the browser.

A conversation started on the page (by its first question or its first document) gets
its address, ``?session=<id>``, so a reload or a shared link opens it. The browser
sets it when the page's ``session_id`` changes, with ``history.replaceState``: no
navigation (which would reload the page's state), and no script sent from the server
(a script event costs about 130 bytes on the wire, on the turn that starts a
conversation).

Only what the page holds once hydrated counts: while a page hydrates, its state arrives
(from before a reload, say) with ``is_hydrated`` false, and its on_load events then set
the conversation the address names. A conversation started before that (a question
sent at once) gets its address when hydration ends.

Reflex's router does not see ``replaceState``; the page's next event carries the new
address, and Reflex would take that for a navigation and send the router vars back to
the browser (about 1 KB of payload, 200 bytes on the wire, on the next question).
The page's events tell the state beforehand (``expect_address_query`` in
``histora.state.address``), so the address is already known when that event comes.
The browser's own copy of the router vars keeps the address it loaded with, until the
next navigation: nothing on the page reads them (the server's copy is up to date).
"""

from __future__ import annotations

import reflex as rx
from reflex.utils.imports import ImportDict
from reflex.vars.base import VarData

from histora.pages.chat.state import ChatState

HOOK = "useHistoraConversationAddress"

HOOK_CODE = rf"""
function {HOOK}(sessionId, characterId, hydrated) {{
  const seen = useRef(sessionId);
  useEffect(() => {{
    if (!hydrated || seen.current === sessionId) return;
    seen.current = sessionId;
    if (!sessionId || !characterId) return;
    const url = new URL(window.location.href);
    // Not if the browser has moved on to another figure's page meanwhile.
    const figure = decodeURIComponent(url.pathname.replace(/\/+$/, "").split("/").pop());
    if (figure !== characterId || url.searchParams.get("session") === sessionId) return;
    const query = new URLSearchParams({{ session: sessionId }});
    window.history.replaceState(window.history.state, "", `${{url.pathname}}?${{query}}`);
  }}, [sessionId, characterId, hydrated]);
}}
"""


class ConversationAddress(rx.Fragment):
    """Renders nothing; puts the chat page's conversation in the address bar when the
    page starts one."""

    def add_imports(self) -> ImportDict:
        return {"react": ["useEffect", "useRef"]}

    def add_custom_code(self) -> list[str]:
        return [HOOK_CODE]

    def add_hooks(self) -> list[str | rx.Var]:
        arguments = (ChatState.session_id, ChatState.character.id, rx.State.is_hydrated)
        call = f"{HOOK}({', '.join(str(argument) for argument in arguments)});"
        data = VarData.merge(*(argument._get_all_var_data() for argument in arguments))
        return [rx.Var(_js_expr=call, _var_data=data)]


conversation_address = ConversationAddress.create
