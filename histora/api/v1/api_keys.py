"""API keys for external clients: create (the secret is shown once), list, revoke."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from histora.api.dependencies import ActorDep, DbDep
from histora.api.schemas import ErrorResponse, RequestBody
from histora.models.users import ApiKeyPublic
from histora.services import api_keys as api_keys_service

router = APIRouter(prefix="/api-keys", tags=["api-keys"])


class ApiKeyCreate(RequestBody):
    name: str = Field(min_length=1, max_length=80)


class ApiKeyCreated(BaseModel):
    key: ApiKeyPublic
    secret: str = Field(description="Shown once: store it now, it cannot be retrieved later.")


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(body: ApiKeyCreate, db: DbDep, actor: ActorDep) -> ApiKeyCreated:
    key, secret = await api_keys_service.create_api_key(db, actor=actor, name=body.name)
    return ApiKeyCreated(key=key, secret=secret)


@router.get("", response_model=list[ApiKeyPublic])
async def list_api_keys(db: DbDep, actor: ActorDep) -> list[ApiKeyPublic]:
    return await api_keys_service.list_api_keys(db, actor=actor)


@router.delete("/{key_id}", status_code=204, responses={404: {"model": ErrorResponse}})
async def revoke_api_key(key_id: uuid.UUID, db: DbDep, actor: ActorDep) -> Response:
    await api_keys_service.revoke_api_key(db, actor=actor, key_id=key_id)
    return Response(status_code=204)
