"""State of a character's knowledge base page: its documents, their progress, re-index.

Listing, delete and the progress poll come from ``DocumentListMixin``; uploads from
``KnowledgeBaseUploadState`` beside this module.
"""

from __future__ import annotations

import uuid

import reflex as rx
from sqlmodel.ext.asyncio.session import AsyncSession

from histora import deps
from histora.components.uploads import ReceivedFile
from histora.errors import HistoraError
from histora.models import User
from histora.models.documents import DocumentPublic, KnowledgeBasePublic
from histora.services import documents as documents_service
from histora.state.documents import (
    NO_SUCH_DOCUMENT,
    DocumentListMixin,
    DocumentUploadMixin,
    unsettled,
)
from histora.state.session import acting, background_actor

ROUTE_PREFIX = "/admin/characters/"


def route_character_id(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] if path.startswith(ROUTE_PREFIX) else ""


class KnowledgeBaseState(DocumentListMixin, rx.State):
    knowledge_base: KnowledgeBasePublic | None = None
    not_found: bool = False

    @rx.var
    def summary(self) -> str:
        total = len(self.documents)
        ready = sum(1 for d in self.documents if d.status == "ready")
        return f"{total} document{'' if total == 1 else 's'}, {ready} ready"

    def _watch_target(self) -> str:
        character_id = route_character_id(str(self.router.url.path))
        kb = self.knowledge_base
        return character_id if kb is not None and kb.character_id == character_id else ""

    async def _fetch(self, db: AsyncSession, actor: User, target: str) -> list[DocumentPublic]:
        return await documents_service.list_for_character(db, actor=actor, character_id=target)

    async def _reload(self) -> None:
        """Re-read the page's data (regular events, under the lock: short reads)."""
        character_id = route_character_id(str(self.router.url.path))
        try:
            async with acting(self) as (db, actor):
                kb = await documents_service.get_knowledge_base(
                    db, actor=actor, character_id=character_id
                )
                documents = await self._fetch(db, actor, character_id)
        except HistoraError as exc:
            self.knowledge_base, self.not_found, self.error = None, True, exc.public_message
            self._apply([])
            return
        self.knowledge_base, self.not_found, self.error = kb, False, ""
        self._apply(documents)

    @rx.event
    async def load(self) -> rx.event.EventSpec | None:
        """On page load, and after uploads: show the documents, watch unsettled ones."""
        self.confirm_delete_id = ""
        await self._reload()
        return KnowledgeBaseState.poll_documents if unsettled(self.documents) else None

    @rx.event
    async def reindex(self, document_id: str) -> rx.event.EventSpec | None:
        container = deps.get_container()
        try:
            async with acting(self) as (db, actor):
                await documents_service.reindex_document(
                    db,
                    actor=actor,
                    document_id=uuid.UUID(document_id),
                    vector_store=container.vector_store,
                )
        except HistoraError as exc:
            self.error = exc.public_message
            return None
        except ValueError:
            self.error = NO_SUCH_DOCUMENT
            return None
        container.ingestion_worker.notify()
        return KnowledgeBaseState.load


class KnowledgeBaseUploadState(DocumentUploadMixin, rx.State):
    """Uploads into the knowledge base shown by ``KnowledgeBaseState``."""

    async def _store(self, received: ReceivedFile) -> DocumentPublic:
        container = deps.get_container()
        async with deps.db_session() as db:
            async with self:
                actor = await background_actor(self, db)
                kb = (await self.get_state(KnowledgeBaseState)).knowledge_base
            return await documents_service.upload_to_character(
                db,
                actor=actor,
                character_id=kb.character_id if kb is not None else "",
                upload=documents_service.Upload(received.filename, received.data),
                files=container.file_store,
                limits=container.extraction_limits,
            )

    def _after_upload(self) -> rx.event.EventSpec:
        return KnowledgeBaseState.load
