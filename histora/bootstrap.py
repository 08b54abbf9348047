"""What happens when the app starts: logging, schema, seed data, the local servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from filelock import AsyncFileLock, FileLock

from histora import deps
from histora.errors import ConfigurationError, InvalidInputError
from histora.log_config import configure_logging
from histora.machine_lock import acquire_when_free, try_acquire, watch_stop_signals
from histora.migrations import upgrade_to_head
from histora.providers.identity import check_emulator_safety
from histora.providers.vector_store import VectorStore
from histora.services import auth as auth_service
from histora.services import seed as seed_service

log = structlog.get_logger(__name__)


async def prepare_database() -> None:
    check_emulator_safety(deps.get_container().settings)  # never start trusting unsigned tokens
    container = deps.get_container()
    settings = container.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Every worker runs this at start; one at a time (per machine). Concurrent seeding
    # inserts the same catalogue rows twice, and the worker that loses dies and takes
    # the whole server down with it (tests/multiworker).
    async with AsyncFileLock(str(settings.data_dir / "startup.lock"), timeout=300):
        await _prepare_database(container)


async def _prepare_database(container: deps.Container) -> None:
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
async def ingestion_worker(container: deps.Container) -> AsyncIterator[None]:
    """Run the ingestion loop in this process, unless another process on the machine does.

    One loop per machine, the holder of a file lock; the other workers' uploads reach it
    through the queue, which is the documents table. With the in-process Chroma path this
    is required (a persistent path allows one writing process); with a Chroma server it
    keeps embedding from running in every worker at once on the same cores.
    """
    settings = container.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(settings.data_dir / "ingest-worker.lock"))
    owner = try_acquire(lock)
    if not owner:
        log.info("ingest.worker_elsewhere")
    task = asyncio.create_task(_run_ingestion(container, lock, owner), name="histora-ingestion")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if lock.is_locked:
            lock.release()


async def _run_ingestion(container: deps.Container, lock: FileLock, owner: bool) -> None:
    if not owner:
        # The loop's worker may go (gunicorn replaces it): then the loop runs here.
        await acquire_when_free(lock)
        log.info("ingest.worker_taking_over")
    if container.settings.resolved_chroma_url:
        # A Chroma server (the managed one may still be starting, maybe in another
        # worker): claim no document before it answers, or the document would fail.
        await _wait_for_vector_store(container.vector_store)
    await container.ingestion_worker.run()


async def _wait_for_vector_store(store: VectorStore, *, interval: float = 1.0) -> None:
    attempts = 0
    while not (health := await store.check_health()).ok:
        if attempts % 60 == 0:  # once a minute or so
            log.info("ingest.waiting_for_vector_store", detail=health.detail)
        attempts += 1
        await asyncio.sleep(interval)
    if attempts:
        log.info("ingest.vector_store_ready")


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    container = deps.get_container()
    configure_logging(container.settings)
    # The server's signal handlers are in place by now; a worker told to stop must not
    # take over the work of one that stopped first (machine_lock).
    watch_stop_signals()
    await prepare_database()
    chroma = container.local_chroma_server
    model = container.local_model_server
    async with contextlib.AsyncExitStack() as stack:
        # Only the worker that takes each server's file lock starts and supervises it;
        # the others connect over loopback (the vector store client connects lazily).
        if chroma is not None:
            await stack.enter_async_context(chroma.run())
        if model is not None and container.settings.local_model_autostart:
            await stack.enter_async_context(model.run())
        await stack.enter_async_context(ingestion_worker(container))
        log.info("histora.started", env=container.settings.env)
        yield
    await container.aclose()
