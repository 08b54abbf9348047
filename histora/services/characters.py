"""The catalogue: browsing published characters."""

from __future__ import annotations

from sqlalchemy import func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from histora.errors import InvalidInputError, NotFoundError
from histora.models import Character, CharacterStatus
from histora.models.base import Page
from histora.models.characters import (
    CATEGORIES,
    CATEGORY_LABELS,
    CategoryPublic,
    CharacterCard,
    CharacterPublic,
)
from histora.services.text_input import refuse_nul

MAX_QUERY_LENGTH = 100


def _published() -> SelectOfScalar[Character]:
    return select(Character).where(Character.status == CharacterStatus.PUBLISHED)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_published(
    db: AsyncSession,
    *,
    category: str | None = None,
    featured: bool | None = None,
    query: str | None = None,
    offset: int = 0,
    limit: int = 24,
) -> Page[CharacterCard]:
    """Published characters, filtered, featured first then by name."""
    if offset < 0 or limit < 1:
        raise InvalidInputError("offset must be >= 0 and limit >= 1.")
    statement = _published()
    if category:
        if category not in CATEGORY_LABELS:
            raise InvalidInputError(f"Unknown category '{category}'.")
        statement = statement.where(Character.category == category)
    if featured is not None:
        statement = statement.where(Character.featured == featured)
    text = refuse_nul((query or "").strip(), what="The search text")
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidInputError(f"The search text is limited to {MAX_QUERY_LENGTH} characters.")
    if text:
        pattern = f"%{_escape_like(text.lower())}%"
        statement = statement.where(
            or_(
                func.lower(Character.name).like(pattern, escape="\\"),
                func.lower(Character.era).like(pattern, escape="\\"),
                func.lower(Character.region).like(pattern, escape="\\"),
                func.lower(Character.short_bio).like(pattern, escape="\\"),
            )
        )
    total = (await db.exec(select(func.count()).select_from(statement.subquery()))).one()
    rows = await db.exec(
        statement.order_by(col(Character.featured).desc(), col(Character.name))
        .offset(offset)
        .limit(limit)
    )
    return Page[CharacterCard](
        items=[CharacterCard.model_validate(row, from_attributes=True) for row in rows],
        total=total,
    )


async def get_published(db: AsyncSession, *, character_id: str) -> Character | None:
    return (await db.exec(_published().where(Character.id == character_id))).first()


async def get_published_or_raise(db: AsyncSession, *, character_id: str) -> CharacterPublic:
    character = await get_published(db, character_id=character_id)
    if character is None:
        raise NotFoundError(f"No historical figure with id '{character_id}'.")
    return CharacterPublic.model_validate(character, from_attributes=True)


async def list_categories(db: AsyncSession) -> list[CategoryPublic]:
    """Every category with the number of published characters in it."""
    rows = await db.exec(
        select(Character.category, func.count())
        .where(Character.status == CharacterStatus.PUBLISHED)
        .group_by(Character.category)
    )
    counts = dict(rows.all())
    return [
        CategoryPublic(id=category.id, label=category.label, count=counts.get(category.id, 0))
        for category in CATEGORIES
    ]
