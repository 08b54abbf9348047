"""What happens when the app starts: logging, schema, seed data, local model server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from histora import deps
from histora.errors import ConfigurationError, InvalidInputError
from histora.log_config import configure_logging
from histora.migrations import upgrade_to_head
from histora.providers.identity import check_emulator_safety
from histora.services import auth as auth_service
from histora.services import seed as seed_service

log = structlog.get_logger(__name__)


async def prepare_database() -> None:
    check_emulator_safety(deps.get_container().settings)  # never start trusting unsigned tokens
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
    admin_password = settings.admin_password.get_secret_value() if settings.admin_password else ""
    if settings.admin_email and admin_password:
        await _ensure_admin(container, email=settings.admin_email, password=admin_password)


async def _ensure_admin(container: deps.Container, *, email: str, password: str) -> None:
    try:
        async with container.db_session() as db:
            user = await auth_service.ensure_admin(
                db, email=email, password=password, settings=container.settings
            )
    except InvalidInputError as exc:
        # A weak or malformed bootstrap credential is a configuration mistake: stop here.
        raise ConfigurationError(
            f"HISTORA_ADMIN_EMAIL / HISTORA_ADMIN_PASSWORD: {exc.public_message}"
        ) from exc
    log.info("admin.ensured", user_id=str(user.id))


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
