"""Hybrid search over sources, as the chat sees them."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from histora.api.dependencies import ActorDep, ContainerDep, DbDep
from histora.api.schemas import ErrorResponse
from histora.models.documents import PassagePublic
from histora.services import search as search_service

router = APIRouter(tags=["search"])
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}
QueryText = Annotated[str, Query(min_length=1, max_length=search_service.QUERY_MAX_CHARS)]
TopK = Annotated[int | None, Query(ge=1, le=search_service.MAX_K)]


@router.get(
    "/characters/{character_id}/search", response_model=list[PassagePublic], responses=ERRORS
)
async def search_character(
    character_id: str,
    q: QueryText,
    db: DbDep,
    actor: ActorDep,
    container: ContainerDep,
    k: TopK = None,
) -> list[PassagePublic]:
    return await search_service.search_character(
        db, actor=actor, retriever=container.retriever, character_id=character_id, query=q, k=k
    )


@router.get(
    "/chat/sessions/{session_id}/search", response_model=list[PassagePublic], responses=ERRORS
)
async def search_session(
    session_id: uuid.UUID,
    q: QueryText,
    db: DbDep,
    actor: ActorDep,
    container: ContainerDep,
    k: TopK = None,
) -> list[PassagePublic]:
    return await search_service.search_session(
        db, actor=actor, retriever=container.retriever, session_id=session_id, query=q, k=k
    )
