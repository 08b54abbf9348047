"""The reply being streamed on the chat page, held in chunk vars (see parts.py).

Each flush writes only its new text, into the next empty chunk var, so the text crosses
the websocket once. Only when every chunk is taken (``CHUNKS`` flushes: about 18 s or
8,800 characters of reply, as the page spaces them) do they collapse into the first,
resending the reply so far.

Every flush's frame names the state it changes, so this state has a short name of its
own (``short_state_name``).
"""

from __future__ import annotations

import functools
import operator

import reflex as rx

from histora.models.documents import CitationPublic
from histora.pages.chat.parts import with_piece
from histora.state.naming import short_state_name

CHUNKS = 32
STATE_NAME = "chat_draft"


class ChatDraft(rx.State):
    """The streaming reply's text (``c0`` + ``c1`` + …) and the passages it may cite."""

    get_name = short_state_name(STATE_NAME)

    sources: list[CitationPublic] = []
    c0: str = ""
    c1: str = ""
    c2: str = ""
    c3: str = ""
    c4: str = ""
    c5: str = ""
    c6: str = ""
    c7: str = ""
    c8: str = ""
    c9: str = ""
    c10: str = ""
    c11: str = ""
    c12: str = ""
    c13: str = ""
    c14: str = ""
    c15: str = ""
    c16: str = ""
    c17: str = ""
    c18: str = ""
    c19: str = ""
    c20: str = ""
    c21: str = ""
    c22: str = ""
    c23: str = ""
    c24: str = ""
    c25: str = ""
    c26: str = ""
    c27: str = ""
    c28: str = ""
    c29: str = ""
    c30: str = ""
    c31: str = ""

    def _chunks(self) -> tuple[str, ...]:
        return tuple(str(getattr(self, f"c{index}")) for index in range(CHUNKS))

    def _show_chunks(self, chunks: tuple[str, ...]) -> None:
        # Only the chunks that changed are assigned: Reflex sends every assigned var.
        for index, (new, old) in enumerate(zip(chunks, self._chunks(), strict=True)):
            if new != old:
                setattr(self, f"c{index}", new)

    def _add(self, text: str) -> None:
        self._show_chunks(with_piece(self._chunks(), text))

    def _show_sources(self, citations: list[CitationPublic]) -> None:
        if self.get_value("sources") != citations:
            self.sources = citations

    def _clear(self) -> None:
        self._show_chunks(("",) * CHUNKS)
        self._show_sources([])

    def _text(self) -> str:
        return "".join(self._chunks())


def draft_text() -> rx.Var[str]:
    """The whole streaming reply, joined in the browser."""
    chunks = (getattr(ChatDraft, f"c{index}") for index in range(CHUNKS))
    return functools.reduce(operator.add, chunks)
