"""What happens when the app starts: logging, schema, seed data, local model server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from histora import deps
from histora.log_config import configure_logging
from histora.migrations import upgrade_to_head
from histora.services import seed as seed_service

log = structlog.get_logger(__name__)


async def prepare_database() -> None:
    container = deps.get_container()
    settings = container.settings
    # Fail fast on a missing production secret rather than at the first sign-in.
    settings.signing_secret()
    await asyncio.to_thread(upgrade_to_head, settings)
    if settings.seed_on_start:
        async with container.db_session() as db:
            result = await seed_service.seed_catalogue(db)
        if result.created:
            log.info("seed.created", count=len(result.created))


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    container = deps.get_container()
    configure_logging(container.settings)
    await prepare_database()
    server = container.local_model_server
    async with contextlib.AsyncExitStack() as stack:
        if server is not None and container.settings.local_model_autostart:
            await stack.enter_async_context(server.run())
        log.info("histora.started", env=container.settings.env)
        yield
    await container.aclose()
