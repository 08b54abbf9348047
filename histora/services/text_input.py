"""Checks shared by the services that store text people type."""

from __future__ import annotations

from histora.errors import InvalidInputError


def refuse_nul(text: str, *, what: str) -> str:
    """``text`` unless it holds U+0000, which PostgreSQL cannot store in a text column
    (SQLite can, so without this the same input would work in development only)."""
    if "\x00" in text:
        raise InvalidInputError(f"{what} cannot contain the NUL character (U+0000).")
    return text
