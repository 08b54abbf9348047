"""Monogram portraits: the letters drawn for each name."""

from __future__ import annotations

import pytest

from histora.services.portraits import initials, portrait_svg
from histora.services.seed import load_seed


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Socrates", "S"),
        ("Marie Curie", "MC"),
        ("Leonardo da Vinci", "LV"),
        ("Hypatia of Alexandria", "HA"),
        ("Ibn Sina (Avicenna)", "IS"),
        ("Ibn Battuta", "IB"),
        ("al-Khwarizmi", "AK"),
        ("Elizabeth I", "E"),
        ("", "?"),
        ("(Anonymous)", "?"),
    ],
)
def test_initials(name: str, expected: str) -> None:
    assert initials(name) == expected


def test_every_seed_portrait_shows_letters_only() -> None:
    for entry in load_seed():
        letters = initials(entry.name)
        assert letters.isalpha() and 1 <= len(letters) <= 2, entry.name
        svg = portrait_svg(character_id=entry.id, name=entry.name, category=entry.category)
        assert f">{letters}<" in svg
