"""Growing values split over Reflex vars: nothing lost, reordered, or resent without need."""

from __future__ import annotations

import pytest

from histora.pages.chat.parts import appended, without_last


def test_appending_keeps_the_order_and_moves_parts_forward() -> None:
    parts: tuple[list[int], ...] = ([], [], [])
    for n in range(1000):
        before = parts
        parts = tuple(appended(parts, [n], (4, 2)))
        assert [*parts[0], *parts[1], *parts[2]] == list(range(n + 1))
        # Parts before the last change only when something moved into them.
        if parts[2]:
            assert parts[:2] == before[:2]
    assert len(parts[0]) > 500


def test_text_parts_hold_the_whole_text() -> None:
    parts: tuple[str, ...] = ("", "")
    seen = []
    for word in ("one ", "two ", "three ", "four "):
        parts = tuple(appended(parts, word, (8,)))
        seen.append(parts)
    assert seen == [
        ("", "one "),
        ("one two ", ""),  # the tail reached 8 characters
        ("one two ", "three "),  # under max(8, half of the head)
        ("one two three four ", ""),
    ]


def test_dropping_the_last_item_takes_it_from_the_last_non_empty_part() -> None:
    assert without_last(([1, 2], [3], [])) == [[1, 2], [], []]
    assert without_last(([1, 2], [], [])) == [[1], [], []]
    assert without_last(([], [], [])) == [[], [], []]


def test_a_minimum_is_needed_for_each_boundary() -> None:
    with pytest.raises(ValueError, match="one minimum per boundary"):
        appended(("", ""), "x", (1, 2))
