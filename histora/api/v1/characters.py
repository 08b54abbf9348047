"""The public catalogue: list, categories, one character."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from histora.api.dependencies import ContainerDep, DbDep
from histora.api.schemas import ErrorResponse
from histora.errors import InvalidInputError
from histora.models.base import Page
from histora.models.characters import CategoryPublic, CharacterCard, CharacterPublic
from histora.services import characters as characters_service

router = APIRouter(prefix="/characters", tags=["characters"])


@router.get("", response_model=Page[CharacterCard], responses={422: {"model": ErrorResponse}})
async def list_characters(
    db: DbDep,
    container: ContainerDep,
    category: Annotated[str | None, Query(description="Category id, e.g. science")] = None,
    featured: Annotated[bool | None, Query()] = None,
    q: Annotated[str | None, Query(description="Search names, eras, regions and bios")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1)] = 24,
) -> Page[CharacterCard]:
    max_limit = container.settings.api_max_page_size
    if limit > max_limit:
        raise InvalidInputError(f"limit must be at most {max_limit}.")
    return await characters_service.list_published(
        db, category=category, featured=featured, query=q, offset=offset, limit=limit
    )


@router.get("/categories", response_model=list[CategoryPublic])
async def list_categories(db: DbDep) -> list[CategoryPublic]:
    return await characters_service.list_categories(db)


@router.get(
    "/{character_id}", response_model=CharacterPublic, responses={404: {"model": ErrorResponse}}
)
async def get_character(character_id: str, db: DbDep) -> CharacterPublic:
    return await characters_service.get_published_or_raise(db, character_id=character_id)
