"""FastAPI dependencies: the container and a short database session per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlmodel.ext.asyncio.session import AsyncSession

from histora import deps


def get_container() -> deps.Container:
    return deps.get_container()


async def get_db() -> AsyncIterator[AsyncSession]:
    async with deps.get_container().db_session() as session:
        yield session


ContainerDep = Annotated[deps.Container, Depends(get_container)]
DbDep = Annotated[AsyncSession, Depends(get_db)]
