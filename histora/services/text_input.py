"""Checks shared by the services that store text people type."""

from __future__ import annotations

from histora.errors import InvalidInputError


def refuse_nul(text: str, *, what: str) -> str:
    """``text`` unless it holds U+0000, which PostgreSQL cannot store in a text column
    (SQLite can, so without this the same input would work in development only)."""
    if "\x00" in text:
        raise InvalidInputError(f"{what} cannot contain the NUL character (U+0000).")
    return text


# Invisible characters that reorder the text after them (embeddings, overrides and
# isolates, U+202A-U+202E and U+2066-U+2069): in a title, "ELIF.exe" can be made to read
# as "exe.FILE". Right-to-left scripts need none of them to display.
_BIDI_CONTROLS = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def without_bidi_controls(text: str) -> str:
    return text.translate(_BIDI_CONTROLS)
