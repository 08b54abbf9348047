"""Accounts: register, sign in, refresh, sign out, the current user, Firebase exchange."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.api.dependencies import ActorDep, ContainerDep, DbDep
from histora.api.schemas import ErrorResponse, RequestBody
from histora.models import User
from histora.models.users import UserPublic
from histora.services import sign_in as sign_in_service
from histora.services import tokens
from histora.settings import Settings

router = APIRouter(prefix="/auth", tags=["auth"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    429: {"model": ErrorResponse},
}


class RegisterRequest(RequestBody):
    email: str = Field(max_length=320)
    password: str = Field(max_length=128)
    display_name: str = Field(max_length=80)


class LoginRequest(RequestBody):
    email: str = Field(max_length=320)
    password: str = Field(max_length=128)


class RefreshRequest(RequestBody):
    refresh_token: str = Field(min_length=1, max_length=256)


class FirebaseExchangeRequest(RequestBody):
    id_token: str = Field(min_length=1, max_length=8192)


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth scheme name, not a secret
    expires_in: int
    user: UserPublic


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _user_agent(request: Request) -> str | None:
    agent = request.headers.get("user-agent")
    return agent[:255] if agent else None


def _tokens(pair: tokens.TokenPair, user: Any) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        user=UserPublic.model_validate(user, from_attributes=True),
    )


async def _new_session(
    db: AsyncSession, user: User, request: Request, settings: Settings
) -> TokenResponse:
    pair = await tokens.issue_token_pair(
        db, user=user, settings=settings, user_agent=_user_agent(request), ip=client_ip(request)
    )
    return _tokens(pair, user)


@router.post("/register", status_code=201, response_model=TokenResponse, responses=ERRORS)
async def register(
    body: RegisterRequest, request: Request, db: DbDep, container: ContainerDep
) -> TokenResponse:
    settings = container.settings
    user = await sign_in_service.sign_up(
        db,
        limiter=container.rate_limiter,
        identity=container.identity,
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        ip=client_ip(request),
        settings=settings,
    )
    return await _new_session(db, user, request, settings)


@router.post("/login", response_model=TokenResponse, responses=ERRORS)
async def login(
    body: LoginRequest, request: Request, db: DbDep, container: ContainerDep
) -> TokenResponse:
    settings = container.settings
    user = await sign_in_service.sign_in(
        db,
        limiter=container.rate_limiter,
        identity=container.identity,
        email=body.email,
        password=body.password,
        ip=client_ip(request),
        settings=settings,
    )
    return await _new_session(db, user, request, settings)


@router.post("/refresh", response_model=TokenResponse, responses=ERRORS)
async def refresh(
    body: RefreshRequest, request: Request, db: DbDep, container: ContainerDep
) -> TokenResponse:
    settings = container.settings
    await container.rate_limiter.hit(settings.refresh_rate_limit, "refresh-ip", client_ip(request))
    user, pair = await tokens.rotate_refresh_token(
        db,
        refresh_token=body.refresh_token,
        settings=settings,
        user_agent=_user_agent(request),
        ip=client_ip(request),
    )
    return _tokens(pair, user)


@router.post("/logout", status_code=204)
async def logout(body: RefreshRequest, db: DbDep) -> Response:
    await tokens.revoke_refresh_token(db, refresh_token=body.refresh_token)
    return Response(status_code=204)


@router.post("/logout-all", status_code=204, responses={401: {"model": ErrorResponse}})
async def logout_everywhere(db: DbDep, actor: ActorDep) -> Response:
    await tokens.revoke_all_refresh_tokens(db, actor=actor)
    return Response(status_code=204)


@router.get("/me", response_model=UserPublic, responses={401: {"model": ErrorResponse}})
async def me(actor: ActorDep) -> UserPublic:
    return UserPublic.model_validate(actor, from_attributes=True)


@router.post("/firebase", response_model=TokenResponse, responses=ERRORS)
async def exchange_firebase_token(
    body: FirebaseExchangeRequest, request: Request, db: DbDep, container: ContainerDep
) -> TokenResponse:
    settings = container.settings
    user = await sign_in_service.exchange_firebase_token(
        db,
        limiter=container.rate_limiter,
        identity=container.identity,
        id_token=body.id_token,
        ip=client_ip(request),
        settings=settings,
    )
    return await _new_session(db, user, request, settings)
