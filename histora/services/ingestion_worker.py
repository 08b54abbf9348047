"""The loop that drains the ingestion queue in the background of one process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from histora.services.ingestion import IngestionContext, claim_next, ingest_document, requeue_stale

log = structlog.get_logger(__name__)


class IngestionWorker:
    """Processes queued documents one at a time.

    Uploads in this process wake it at once through ``notify``; uploads in other
    processes are found by polling, since the queue is the documents table.
    """

    def __init__(
        self, context: Callable[[], IngestionContext], *, poll_seconds: float = 2.0
    ) -> None:
        self._context = context
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    def notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        ctx = self._context()
        requeued = await requeue_stale(ctx.session_factory)
        if requeued:
            log.info("ingest.requeued_stale", count=requeued)
        while True:
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
