"""The streaming reply's chunk vars: every character arrives, in order, sent about once."""

from __future__ import annotations

import uuid

from histora.models.documents import CitationPublic
from histora.pages.chat.draft import CHUNKS, STATE_NAME, ChatDraft, draft_text
from histora.pages.chat.parts import with_piece
from tests.support import reflex_root, substate


def _replay(pieces: list[str]) -> tuple[tuple[str, ...], int]:
    """The chunks after each piece is flushed, and the characters Reflex would send."""
    chunks, sent = ("",) * CHUNKS, 0
    for piece in pieces:
        grown = with_piece(chunks, piece)
        # Reflex sends each changed var whole.
        sent += sum(len(new) for new, old in zip(grown, chunks, strict=True) if new != old)
        chunks = grown
    return chunks, sent


def test_a_reply_within_the_chunks_is_sent_exactly_once() -> None:
    pieces = [f"piece {n} of a reply that streams in. " for n in range(CHUNKS)]
    chunks, sent = _replay(pieces)
    text = "".join(pieces)
    assert "".join(chunks) == text
    assert sent == len(text)


def test_a_long_reply_keeps_every_character_and_collapses_rarely() -> None:
    pieces = [f"word{n} " * 12 for n in range(80)]  # 80 flushes, 6,600 characters
    chunks, sent = _replay(pieces)
    text = "".join(pieces)
    assert "".join(chunks) == text
    # Two collapses (after 32 and 63 flushes) resend the text so far: 2.2 characters
    # sent per character, where one var resent whole on every flush costs about 40.
    assert sent < 2.5 * len(text), sent / len(text)


def test_the_state_has_one_var_per_chunk_and_a_short_name() -> None:
    fields = set(ChatDraft.get_fields())
    assert {f"c{index}" for index in range(CHUNKS)} <= fields
    assert f"c{CHUNKS}" not in fields
    assert ChatDraft.get_full_name() == f"reflex___state____state.{STATE_NAME}"
    joined = str(draft_text())
    assert all(f".c{index}_rx_state_" in joined for index in range(CHUNKS))


def test_a_flush_marks_only_the_chunk_it_wrote() -> None:
    draft = substate(reflex_root(), ChatDraft)
    draft._add("The unexamined life ")
    draft.dirty_vars.clear()
    draft._add("is not worth living.")
    assert draft.dirty_vars == {"c1"}
    assert draft._text() == "The unexamined life is not worth living."

    citation = CitationPublic(
        n=1,
        document_id=uuid.uuid4(),
        document_name="Apology",
        page=None,
        char_start=0,
        char_end=5,
        text="Crito",
        score=0.5,
    )
    draft._show_sources([citation])
    draft.dirty_vars.clear()
    draft._show_sources([citation])  # the same passages again: nothing to send
    assert draft.dirty_vars == set()

    draft._clear()
    assert draft.dirty_vars == {"c0", "c1", "sources"}
    assert draft._text() == "" and draft.sources == []
