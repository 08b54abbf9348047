"""Short names for the states whose changes stream to the browser.

Reflex names a state after its module path, and every state delta it sends over the
websocket carries that name (``reflex___state____state.histora___pages___chat___…``,
some 70 bytes). A state that changes on every chat turn or flush takes a short name
of its own instead.
"""

from __future__ import annotations

from typing import Any


def short_state_name(name: str) -> Any:
    """A ``get_name`` for a state class body: ``get_name = short_state_name("chat")``."""

    def get_name(cls: type[Any]) -> str:
        return name

    # Reflex refuses a state member that replaces one of its own methods unless the
    # function carries this flag (what its own overrides use).
    get_name.__override_base_method__ = True  # type: ignore[attr-defined]
    return classmethod(get_name)
