"""A value that keeps growing, held in a fixed set of Reflex vars so an append sends little.

Reflex sends a changed var whole: a growing text (or list) held in one var is resent
from the start on every append. Held in pieces, oldest first, an append fills the first
empty piece and so sends only itself. When every piece is taken they collapse into the
first (sent once more) and the append takes the second: with n pieces, a value that
grows by n appends costs about twice its size, instead of about n/2 times.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, TypeVar

Piece = TypeVar("Piece", str, list[Any])


def with_piece(pieces: tuple[Piece, ...], addition: Piece) -> tuple[Piece, ...]:
    """``pieces`` after ``addition`` joins them (the non-empty pieces come first)."""
    if len(pieces) < 2:
        raise ValueError("a collapse needs at least two pieces")
    if not addition:
        return pieces
    for index, piece in enumerate(pieces):
        if not piece:
            return (*pieces[:index], addition, *pieces[index + 1 :])
    empty = pieces[0][:0]
    return (functools.reduce(operator.add, pieces), addition, *([empty] * (len(pieces) - 2)))


def without_last(pieces: tuple[Piece, ...]) -> tuple[Piece, ...]:
    """``pieces`` with the last item of the last non-empty piece removed."""
    for index in range(len(pieces) - 1, -1, -1):
        if pieces[index]:
            return (*pieces[:index], pieces[index][:-1], *pieces[index + 1 :])
    return pieces
