"""FastAPI dependencies: the container and a short database session per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from histora import deps
from histora.errors import UnauthorizedError
from histora.models import User
from histora.services import auth as auth_service


async def get_container() -> deps.Container:
    # async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a
    # thread hop on every request for what is a dictionary lookup.
    return deps.get_container()


async def get_db() -> AsyncIterator[AsyncSession]:
    async with deps.get_container().db_session() as session:
        yield session


ContainerDep = Annotated[deps.Container, Depends(get_container)]
# Function scope: the session closes when the endpoint returns, before a streamed
# response starts, so no connection is held while a model is answering.
DbDep = Annotated[AsyncSession, Depends(get_db, scope="function")]


async def get_actor(request: Request, db: DbDep, container: ContainerDep) -> User:
    """The signed-in user from ``Authorization: Bearer`` (an access token or an API key)."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise UnauthorizedError("Sign in, or send an API key as 'Authorization: Bearer <key>'.")
    return await auth_service.authenticate_bearer(
        db, token=credentials.strip(), settings=container.settings
    )


ActorDep = Annotated[User, Depends(get_actor)]
