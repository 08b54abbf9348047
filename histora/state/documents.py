"""What the knowledge base page and the chat page share about source documents.

Two Reflex mixins (each page's State mixes them in and supplies the scope):

- ``DocumentListMixin``: a list of documents, delete with confirmation, and the
  progress poll. Progress lives in the database (the ingestion worker updates each
  row), so while a document is unsettled one background loop per browser tab
  re-reads the list about once a second. The lock is held only to read inputs and
  apply results; the loop ends when everything is settled or the page is left.
- ``DocumentUploadMixin``: the drop zone's handlers. Files stream in as chunks to a
  background event, each is read into memory and handed to the documents service
  outside the lock, and every file gets a plain-words outcome.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import reflex as rx
import structlog

from histora import deps
from histora.components.uploads import (
    MAX_FILES_PER_DROP,
    TOO_MANY_FILES,
    ReceivedFile,
    UploadOutcome,
    receive_files,
    rejected_outcomes,
    too_large_message,
)
from histora.errors import HistoraError
from histora.models.documents import DocumentPublic
from histora.services import documents as documents_service
from histora.state.session import acting, background_actor

log = structlog.get_logger(__name__)

POLL_SECONDS = 1.0
POLL_STALE_SECONDS = 10.0  # a loop that has not ticked for this long is gone
POLL_IDLE_SECONDS = 600.0  # stop watching documents that have not moved for this long
DROP_WINDOW_SECONDS = 1.0  # a drop's refusals and its uploads arrive as two events, ms apart
NO_SUCH_DOCUMENT = "No such document."
UNEXPECTED = "Histora could not add this file. Please try again."


def _require_hooks(cls: type, *names: str) -> None:
    """A page State that mixes in a documents mixin must say what its scope is."""
    missing = [name for name in names if not callable(getattr(cls, name, None))]
    if missing:
        raise TypeError(f"{cls.__name__} must define {', '.join(missing)}")


def unsettled(documents: list[DocumentPublic]) -> bool:
    return any(not document.is_settled for document in documents)


def _public(exc: Exception) -> str:
    return exc.public_message if isinstance(exc, HistoraError) else NO_SUCH_DOCUMENT


class DocumentListMixin(rx.State, mixin=True):
    documents: list[DocumentPublic] = []
    error: str = ""
    confirm_delete_id: str = ""
    _version: int = 0  # bumped by every write of `documents`; a stale poll result is dropped
    _poll_beat: float = 0.0

    # The page supplies its scope through three methods (checked when its State is
    # defined): ``_watch_target(self) -> str`` (under the lock: what to watch now, ""
    # when the page shows no scope), ``_fetch(self, db, actor, target)`` (the list, from
    # the documents service) and ``_reload(self)`` (re-read the page's data).
    def __init_subclass__(cls, mixin: bool = False, **kwargs: Any) -> None:
        if not mixin:  # before Reflex registers the State, so a bad one leaves no trace
            _require_hooks(cls, "_watch_target", "_fetch", "_reload")
        super().__init_subclass__(mixin=mixin, **kwargs)

    @rx.var
    def confirm_delete_name(self) -> str:
        found = [d.filename for d in self.documents if str(d.id) == self.confirm_delete_id]
        return found[0] if found else ""

    def _apply(self, documents: list[DocumentPublic]) -> None:
        self.documents, self._version = documents, self._version + 1

    @rx.event
    def ask_delete(self, document_id: str) -> None:
        self.confirm_delete_id = document_id

    @rx.event
    def cancel_delete(self) -> None:
        self.confirm_delete_id = ""

    @rx.event
    async def confirm_delete(self) -> None:
        document_id, self.confirm_delete_id = self.confirm_delete_id, ""
        container = deps.get_container()
        try:
            async with acting(self) as (db, actor):
                await documents_service.delete_document(
                    db,
                    actor=actor,
                    document_id=uuid.UUID(document_id),
                    files=container.file_store,
                    vector_store=container.vector_store,
                )
        except (HistoraError, ValueError) as exc:
            self.error = _public(exc)
            return
        await self._reload()

    @rx.event(background=True)
    async def poll_documents(self) -> None:
        async with self:
            if time.time() - self._poll_beat < POLL_STALE_SECONDS:
                return  # a loop is already watching this tab
            self._poll_beat = time.time()
        last_change, seen = time.monotonic(), None
        while time.monotonic() - last_change < POLL_IDLE_SECONDS:
            await asyncio.sleep(POLL_SECONDS)
            found = await self._poll_once()
            if found is None:
                return
            if found != seen:
                last_change, seen = time.monotonic(), found
        async with self:
            self._poll_beat = 0.0

    async def _poll_once(self) -> list[tuple[str, str, float]] | None:
        """Re-read the list once; None when the loop should end (it has then let go)."""
        try:
            async with deps.db_session() as db:
                async with self:
                    target = self._watch_target()
                    if not (target and unsettled(self.documents)):
                        self._poll_beat = 0.0
                        return None
                    self._poll_beat, version = time.time(), self._version
                    actor = await background_actor(self, db)
                documents = await self._fetch(db, actor, target)
        except (HistoraError, ValueError) as exc:
            async with self:
                self.error, self._poll_beat = _public(exc), 0.0
            return None
        async with self:
            if version == self._version and self._watch_target() == target:
                self._apply(documents)
        return [(str(d.id), d.status.value, d.progress) for d in documents]


class DocumentUploadMixin(rx.State, mixin=True):
    outcomes: list[UploadOutcome] = []
    uploading: bool = False
    max_bytes: int = 20 * 1024 * 1024
    _last_drop: float = 0.0

    # The page supplies where files go, ``async _store(self, received) -> DocumentPublic``
    # (a documents-service upload), and ``_after_upload(self) -> EventSpec`` (what runs
    # next); both are checked when its State is defined.
    def __init_subclass__(cls, mixin: bool = False, **kwargs: Any) -> None:
        if not mixin:  # before Reflex registers the State, so a bad one leaves no trace
            _require_hooks(cls, "_store", "_after_upload")
        super().__init_subclass__(mixin=mixin, **kwargs)

    ACCEPTED_MESSAGE: ClassVar[str] = "Added. Its progress shows in the documents list."

    @rx.event
    def reset_uploads(self) -> None:
        self.outcomes, self.uploading = [], False
        self.max_bytes = deps.get_container().settings.upload_max_bytes

    def _begin_drop(self) -> None:
        """Outcomes of one drop show together; a new drop starts a fresh list."""
        now = time.time()
        if now - self._last_drop > DROP_WINDOW_SECONDS and not self.uploading:
            self.outcomes = []
        self._last_drop = now

    @rx.event
    def reject_files(self, rejected: list[dict[str, Any]]) -> None:
        self._begin_drop()
        self.outcomes = [*self.outcomes, *rejected_outcomes(rejected, max_bytes=self.max_bytes)]

    @rx.event(background=True)
    async def upload(self, chunks: rx.UploadChunkIterator) -> AsyncIterator[rx.event.EventSpec]:
        container = deps.get_container()
        max_bytes = container.settings.upload_max_bytes
        async with self:
            self._begin_drop()
            self.uploading = True
        count = 0
        try:
            async for received in receive_files(chunks, max_bytes=max_bytes):
                count += 1
                over = count > MAX_FILES_PER_DROP
                outcome = await self._add(received, max_bytes=max_bytes, over=over)
                async with self:
                    self.outcomes = [*self.outcomes, outcome]
        finally:
            async with self:
                self.uploading = False
        container.ingestion_worker.notify()
        yield self._after_upload()

    async def _add(self, received: ReceivedFile, *, max_bytes: int, over: bool) -> UploadOutcome:
        name = received.filename
        if over:
            return UploadOutcome(filename=name, ok=False, message=TOO_MANY_FILES)
        if received.too_large:
            return UploadOutcome(filename=name, ok=False, message=too_large_message(max_bytes))
        try:
            document = await self._store(received)
        except HistoraError as exc:
            return UploadOutcome(filename=name, ok=False, message=exc.public_message)
        except Exception:  # a bug must not reach anyone as a traceback
            log.exception("documents.upload_failed", filename=name)
            return UploadOutcome(filename=name, ok=False, message=UNEXPECTED)
        return UploadOutcome(filename=document.filename, ok=True, message=self.ACCEPTED_MESSAGE)
