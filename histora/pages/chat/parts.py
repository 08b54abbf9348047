"""A value that keeps growing, held in a few Reflex vars so that an append resends little.

Reflex resends a changed var whole. Holding a growing text (or list) as one var makes
every append resend everything so far. Split over parts, oldest first, an append
changes only the last part; a part moves into the one before it once it holds half
that part's length (and at least that boundary's minimum), so the larger, older parts
change geometrically less often.
"""

from __future__ import annotations

from typing import Any, TypeVar

Part = TypeVar("Part", str, list[Any])


def appended(parts: tuple[Part, ...], addition: Part, merge_min: tuple[int, ...]) -> list[Part]:
    """``parts`` after ``addition`` joins the last one; ``merge_min[i]`` is the least
    length at which part ``i + 1`` moves into part ``i``."""
    if len(merge_min) != len(parts) - 1:
        raise ValueError("one minimum per boundary between parts")
    grown = [*parts[:-1], parts[-1] + addition]
    for index in range(len(grown) - 1, 0, -1):
        part, before = grown[index], grown[index - 1]
        if len(part) < max(merge_min[index - 1], len(before) // 2):
            break
        grown[index - 1], grown[index] = before + part, part[:0]
    return grown


def without_last(parts: tuple[Part, ...]) -> list[Part]:
    """``parts`` with the last item of the last non-empty part removed."""
    trimmed = list(parts)
    for index in range(len(trimmed) - 1, -1, -1):
        if trimmed[index]:
            trimmed[index] = trimmed[index][:-1]
            break
    return trimmed
