"""Growing values held in a fixed set of Reflex vars: nothing lost, reordered or resent."""

from __future__ import annotations

import pytest

from histora.pages.chat.parts import with_piece, without_last


def test_appending_keeps_the_order_and_changes_only_the_piece_it_fills() -> None:
    pieces: tuple[list[int], ...] = ([], [], [], [])
    collapses = 0
    for n in range(100):
        before = pieces
        pieces = with_piece(pieces, [n])
        assert [item for piece in pieces for item in piece] == list(range(n + 1))
        changed = [index for index, (a, b) in enumerate(zip(pieces, before, strict=True)) if a != b]
        if len(changed) == 1:
            assert pieces[changed[0]] == [n]  # only the new item was written
        else:
            collapses += 1
            assert pieces[:2] == (list(range(n)), [n])
    assert collapses == 32  # after the first four, every third append


def test_text_pieces_hold_the_whole_text() -> None:
    pieces: tuple[str, ...] = ("", "", "")
    seen = []
    for word in ("one ", "two ", "three ", "four "):
        pieces = with_piece(pieces, word)
        seen.append(pieces)
    assert seen == [
        ("one ", "", ""),
        ("one ", "two ", ""),
        ("one ", "two ", "three "),
        ("one two three ", "four ", ""),  # every piece was taken
    ]
    assert with_piece(pieces, "") == pieces  # nothing to add: nothing changes


def test_dropping_the_last_item_takes_it_from_the_last_non_empty_piece() -> None:
    assert without_last(([1, 2], [3], [])) == ([1, 2], [], [])
    assert without_last(([1, 2], [], [])) == ([1], [], [])
    assert without_last(([], [], [])) == ([], [], [])
    # The emptied piece is the next one an append fills, so the order holds.
    assert with_piece(without_last(([1], [2], [])), [3]) == ([1], [3], [])


def test_a_single_piece_cannot_collapse() -> None:
    with pytest.raises(ValueError, match="at least two pieces"):
        with_piece(("x",), "y")
