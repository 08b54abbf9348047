"""The loop that drains the ingestion queue in the background of one process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from histora.services.ingestion import IngestionContext, claim_next, ingest_document, requeue_stale

log = structlog.get_logger(__name__)

# How often the loop looks for documents left half done by a worker that died.
REQUEUE_CHECK_SECONDS = 60.0


class IngestionWorker:
    """Processes queued documents one at a time.

    Uploads in this process wake it at once through ``notify``; uploads in other
    processes are found by polling, since the queue is the documents table.
    """

    def __init__(
        self,
        context: Callable[[], IngestionContext],
        *,
        poll_seconds: float = 2.0,
        requeue_seconds: float = REQUEUE_CHECK_SECONDS,
    ) -> None:
        self._context = context
        self._poll_seconds = poll_seconds
        self._requeue_seconds = requeue_seconds
        self._wake = asyncio.Event()

    async def _requeue_stale(self, ctx: IngestionContext) -> None:
        try:
            requeued = await requeue_stale(ctx.session_factory)
        except Exception:
            log.exception("ingest.requeue_failed")
            return
        if requeued:
            log.info("ingest.requeued_stale", count=requeued)

    def notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        ctx = self._context()
        loop = asyncio.get_running_loop()
        next_requeue = loop.time()
        while True:
            # Not only at start: a document whose worker died after this loop started (a
            # loop that moved here from that worker, say) goes stale later.
            if loop.time() >= next_requeue:
                next_requeue = loop.time() + self._requeue_seconds
                await self._requeue_stale(ctx)
            try:
                document_id = await claim_next(ctx.session_factory)
            except Exception:
                log.exception("ingest.claim_failed")
                document_id = None
            if document_id is not None:
                await ingest_document(ctx, document_id)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
