"""FastAPI dependencies: the container and a short database session per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlmodel.ext.asyncio.session import AsyncSession

from histora import deps
from histora.models import User
from histora.services import users as users_service


def get_container() -> deps.Container:
    return deps.get_container()


async def get_db() -> AsyncIterator[AsyncSession]:
    async with deps.get_container().db_session() as session:
        yield session


ContainerDep = Annotated[deps.Container, Depends(get_container)]
# Function scope: the session closes when the endpoint returns, before a streamed
# response starts, so no connection is held while a model is answering.
DbDep = Annotated[AsyncSession, Depends(get_db, scope="function")]


async def get_actor(db: DbDep, container: ContainerDep) -> User:
    return await users_service.current_actor(db, settings=container.settings)


ActorDep = Annotated[User, Depends(get_actor)]
