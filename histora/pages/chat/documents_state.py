"""The open conversation's own documents: list, progress, delete, and uploads.

Listing, delete and the progress poll come from ``DocumentListMixin``; the drop
zone's handlers from ``DocumentUploadMixin``. Adding a document to a page with
no conversation yet starts one.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

import reflex as rx
from sqlmodel.ext.asyncio.session import AsyncSession

from histora import deps
from histora.components.uploads import ReceivedFile
from histora.errors import HistoraError, NotFoundError
from histora.models import User
from histora.models.chat import SessionLink
from histora.models.documents import DocumentPublic
from histora.pages.chat.state import ChatState
from histora.services import conversations
from histora.services import documents as documents_service
from histora.state.address import expect_address_query
from histora.state.documents import DocumentListMixin, DocumentUploadMixin, unsettled
from histora.state.session import acting, background_actor


class ChatDocumentsState(DocumentListMixin, rx.State):
    _session_id: str = ""  # the conversation whose documents are listed

    def _watch_target(self) -> str:
        on_page = str(self.router.url.path).startswith("/chat/")
        return self._session_id if on_page else ""

    async def _fetch(self, db: AsyncSession, actor: User, target: str) -> list[DocumentPublic]:
        return await documents_service.list_for_session(
            db, actor=actor, session_id=uuid.UUID(target)
        )

    async def _reload(self) -> None:
        """Re-read the list (regular events, under the lock: a short read)."""
        self._session_id = (await self.get_state(ChatState)).session_id
        if not self._session_id:
            self._apply([])
            return
        try:
            async with acting(self) as (db, actor):
                documents = await self._fetch(db, actor, self._session_id)
        except HistoraError as exc:
            self.error = exc.public_message
            self._apply([])
            return
        self.error = ""
        self._apply(documents)

    @rx.event
    async def load(self) -> rx.event.EventSpec | None:
        """After the page loaded its conversation, and after each upload (which may have
        started the conversation; the page then puts it in the address bar, address.py)."""
        self.confirm_delete_id = ""
        await self._reload()
        return ChatDocumentsState.poll_documents if unsettled(self.documents) else None


class ChatUploadState(DocumentUploadMixin, rx.State):
    ACCEPTED_MESSAGE: ClassVar[str] = "Added. Answers use it once it is ready."

    async def _store(self, received: ReceivedFile) -> DocumentPublic:
        container = deps.get_container()
        async with deps.db_session() as db:
            async with self:
                actor = await background_actor(self, db)
            session_id = await self._conversation(db, actor)
            return await documents_service.upload_to_session(
                db,
                actor=actor,
                session_id=uuid.UUID(session_id),
                upload=documents_service.Upload(received.filename, received.data),
                files=container.file_store,
                limits=container.extraction_limits,
            )

    async def _conversation(self, db: AsyncSession, actor: User) -> str:
        """The open conversation, started now if the page has none yet."""
        async with self:
            chat = await self.get_state(ChatState)
            session_id, character = chat.session_id, chat.character
        if session_id:
            return session_id
        if character is None:
            raise NotFoundError("Open a conversation first.")
        created = await conversations.create_session(db, actor=actor, character_id=character.id)
        async with self:
            chat = await self.get_state(ChatState)
            if not chat.session_id:  # unless a first message started one meanwhile
                chat.session_id = str(created.id)
                chat._show_sessions([SessionLink.of(created), *chat._listed_sessions()])
                # The page puts it in the address bar (address.py).
                expect_address_query(chat, {"session": chat.session_id})
            return chat.session_id

    def _after_upload(self) -> rx.event.EventSpec:
        return ChatDocumentsState.load
