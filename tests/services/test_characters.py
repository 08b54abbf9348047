from __future__ import annotations

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import InvalidInputError, NotFoundError
from histora.models.characters import format_lifespan, format_year
from histora.services import characters as characters_service
from tests.factories import make_character


@pytest.mark.parametrize(
    ("birth", "death", "expected"),
    [
        (-470, -399, "470 – 399 BCE"),
        (-4, 65, "4 BCE – 65 CE"),
        (1809, 1865, "1809 – 1865"),
        (1900, None, "born 1900"),
    ],
)
def test_format_lifespan_handles_bce(birth: int, death: int | None, expected: str) -> None:
    assert format_lifespan(birth, death) == expected


def test_format_year_writes_bce() -> None:
    assert format_year(-551) == "551 BCE"
    assert format_year(1934) == "1934"


async def test_featured_characters_come_first(db: AsyncSession) -> None:
    page = await characters_service.list_published(db, limit=100)
    flags = [card.featured for card in page.items]
    assert flags == sorted(flags, reverse=True)


async def test_search_matches_era_and_region(db: AsyncSession) -> None:
    await make_character(db, name="Quentin Q", era="Age of Quills", region="Nowhereland")
    by_era = await characters_service.list_published(db, query="age of quills")
    by_region = await characters_service.list_published(db, query="NOWHERELAND")
    assert [c.name for c in by_era.items] == ["Quentin Q"]
    assert [c.name for c in by_region.items] == ["Quentin Q"]


async def test_overlong_search_is_invalid(db: AsyncSession) -> None:
    with pytest.raises(InvalidInputError):
        await characters_service.list_published(db, query="x" * 101)


async def test_get_published_or_raise_unknown(db: AsyncSession) -> None:
    with pytest.raises(NotFoundError):
        await characters_service.get_published_or_raise(db, character_id="nobody")
