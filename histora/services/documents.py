"""Source documents: upload, list, read, delete and re-index, with authorization.

A character's knowledge base is managed by admins; a chat session's documents by
the session's owner. Someone else's document is reported as not found, so ids
leak nothing. Uploads are validated in full (type by content, size, pages,
encryption, text layer) before anything is stored, so a bad file gets a clear
4xx at once instead of a failed job later. Ingestion itself runs in the
background (``services.ingestion``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

import structlog
from sqlalchemy import case, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from histora.errors import ConflictError, FileTooLargeError, NotFoundError, UnreadableFileError
from histora.models import Character, ChatSession, Role, User
from histora.models.documents import (
    Document,
    DocumentKind,
    DocumentPublic,
    DocumentScope,
    DocumentStatus,
    KnowledgeBasePublic,
)
from histora.providers.file_store import FileStore
from histora.providers.vector_store import VectorStore
from histora.services import admin as admin_service
from histora.services import conversations as conversations_service
from histora.services.extraction import ExtractionLimits, extract
from histora.services.retrieval import document_scope

log = structlog.get_logger(__name__)

FILENAME_MAX_LENGTH = 255
MAX_DOCUMENTS_PER_SESSION = 20
# Purges before a conversation is deleted even if uploads keep arriving (see
# delete_session_and_documents); one is enough unless an upload lands meanwhile.
_DELETE_ROUNDS = 3


@dataclass(frozen=True)
class Upload:
    """An uploaded file as the adapters received it (the name is only a label)."""

    filename: str
    data: bytes


def document_public(document: Document) -> DocumentPublic:
    return DocumentPublic.model_validate(document, from_attributes=True)


def clean_filename(raw: str) -> str:
    """A display name: the last path part, printable, bounded; never used as a path."""
    name = PureWindowsPath(PurePosixPath(raw or "").name).name
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if ch.isprintable()).strip()
    if len(name) > FILENAME_MAX_LENGTH:
        stem, dot, suffix = name.rpartition(".")
        keep = FILENAME_MAX_LENGTH - len(suffix) - 1
        name = f"{stem[:keep]}.{suffix}" if dot and 0 < len(suffix) < 16 else name[:255]
    return name or "document"


async def _character_or_raise(db: AsyncSession, character_id: str) -> Character:
    character = await db.get(Character, character_id)
    if character is None:
        raise NotFoundError("No such character.")
    return character


@dataclass(frozen=True)
class _CheckedFile:
    sha256: str
    kind: DocumentKind
    pages: int | None


async def _validated(db: AsyncSession, upload: Upload, limits: ExtractionLimits) -> _CheckedFile:
    """Read the whole file now, so a bad one is refused before anything is stored.

    The checks so far end their transaction first: reading a large PDF takes seconds,
    and on SQLite a transaction holds the database's write lock, which every chat send
    needs. (Loaded objects stay usable: sessions here do not expire them on commit.)
    """
    await db.commit()
    if not upload.data:
        raise UnreadableFileError("This file is empty.")
    if len(upload.data) > limits.max_bytes:
        raise FileTooLargeError(
            f"This file is {_megabytes(len(upload.data))}; the limit is "
            f"{_megabytes(limits.max_bytes)}."
        )
    extracted = await asyncio.to_thread(
        extract, upload.data, filename=upload.filename, limits=limits
    )
    return _CheckedFile(
        sha256=hashlib.sha256(upload.data).hexdigest(),
        kind=extracted.kind,
        pages=extracted.page_count,
    )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


async def _duplicate(db: AsyncSession, *, scope_filter: object, sha256: str) -> Document | None:
    return (
        await db.exec(select(Document).where(scope_filter, Document.sha256 == sha256).limit(1))  # type: ignore[arg-type]
    ).first()


async def _store(
    db: AsyncSession,
    *,
    document: Document,
    upload: Upload,
    files: FileStore,
) -> DocumentPublic:
    # The checks' transaction ends before the file is written (up to 20 MB, synced to
    # disk): see _validated. The unique index still refuses a duplicate that raced in,
    # and a conversation's limit is counted again in the transaction that adds the row.
    await db.commit()
    document.storage_key = key = await files.save(upload.data)
    try:
        if document.session_id is not None:
            await _check_room(db, document.session_id, lock=True)
        db.add(document)
        await db.commit()
    except BaseException as error:
        # Refused, failed or cancelled: no row, so no file either.
        with contextlib.suppress(Exception):
            await db.rollback()
        await asyncio.shield(files.delete(key))
        if isinstance(error, IntegrityError):  # a duplicate raced past the first check
            raise ConflictError("This file has already been uploaded here.") from None
        raise
    await db.refresh(document)
    log.info(
        "document.uploaded",
        document_id=str(document.id),
        scope=str(document.scope),
        kind=str(document.kind),
        size_bytes=document.size_bytes,
    )
    return document_public(document)


async def upload_to_character(
    db: AsyncSession,
    *,
    actor: User,
    character_id: str,
    upload: Upload,
    files: FileStore,
    limits: ExtractionLimits,
) -> DocumentPublic:
    admin_service.require_admin(actor)
    character = await _character_or_raise(db, character_id)
    filename = clean_filename(upload.filename)
    checked = await _validated(db, Upload(filename, upload.data), limits)
    existing = await _duplicate(
        db, scope_filter=Document.character_id == character.id, sha256=checked.sha256
    )
    if existing is not None:
        raise ConflictError(
            f"This file is already in {character.name}'s knowledge base as “{existing.filename}”."
        )
    document = _new_document(filename, upload, checked=checked, actor=actor)
    document.scope, document.character_id = DocumentScope.CHARACTER, character.id
    return await _store(db, document=document, upload=upload, files=files)


async def upload_to_session(
    db: AsyncSession,
    *,
    actor: User,
    session_id: uuid.UUID,
    upload: Upload,
    files: FileStore,
    limits: ExtractionLimits,
) -> DocumentPublic:
    session = await conversations_service.get_owned_or_raise(db, actor=actor, session_id=session_id)
    # Refused before the file is read; counted again when it is added (see _store).
    await _check_room(db, session.id, lock=False)
    filename = clean_filename(upload.filename)
    checked = await _validated(db, Upload(filename, upload.data), limits)
    existing = await _duplicate(
        db, scope_filter=Document.session_id == session.id, sha256=checked.sha256
    )
    if existing is not None:
        raise ConflictError(f"This file is already in this conversation as “{existing.filename}”.")
    document = _new_document(filename, upload, checked=checked, actor=actor)
    document.scope, document.session_id = DocumentScope.SESSION, session.id
    return await _store(db, document=document, upload=upload, files=files)


async def _check_room(db: AsyncSession, session_id: uuid.UUID, *, lock: bool) -> None:
    """Refuse a document past the conversation's limit. With ``lock``, uploads to one
    conversation count one after another: the conversation's row is locked until the
    transaction ends (PostgreSQL; SQLite runs one writing transaction at a time)."""
    if lock and not await _lock_conversation(db, session_id, deleting=False):
        raise NotFoundError(conversations_service.SESSION_NOT_FOUND)  # deleted meanwhile
    counted = select(func.count()).select_from(_documents_of(session_id).subquery())
    count = (await db.exec(counted)).one()
    if count >= MAX_DOCUMENTS_PER_SESSION:
        raise ConflictError(
            f"A conversation can hold up to {MAX_DOCUMENTS_PER_SESSION} documents. "
            "Delete one to add another."
        )


async def _lock_conversation(db: AsyncSession, session_id: uuid.UUID, *, deleting: bool) -> bool:
    """Lock the conversation's row until the transaction ends; False if it is gone.

    Uploads take NO KEY UPDATE: they take turns among themselves, while the
    conversation's messages, whose inserts take a key-share lock on it, are not held
    up. Deleting takes FOR UPDATE, which waits for both. (SQLite has no row locks; it
    runs one writing transaction at a time.)
    """
    locked = select(ChatSession.id).where(ChatSession.id == session_id)
    found = await db.exec(locked.with_for_update(key_share=not deleting))
    return found.first() is not None


def _new_document(filename: str, upload: Upload, *, checked: _CheckedFile, actor: User) -> Document:
    return Document(
        filename=filename,
        kind=checked.kind,
        size_bytes=len(upload.data),
        sha256=checked.sha256,
        pages=checked.pages,
        uploaded_by_id=actor.id,
        status=DocumentStatus.QUEUED,
        storage_key="",
    )


async def _visible_or_raise(db: AsyncSession, *, actor: User, document_id: uuid.UUID) -> Document:
    """The document if the actor may manage it: admins for knowledge bases, owners for chats."""
    document = await db.get(Document, document_id)
    if document is not None:
        if document.scope == DocumentScope.CHARACTER and actor.role == Role.ADMIN:
            return document
        if document.scope == DocumentScope.SESSION and document.session_id is not None:
            owned = await conversations_service.get_owned(
                db, actor=actor, session_id=document.session_id
            )
            if owned is not None:
                return document
    raise NotFoundError("No such document.")


async def get_document(db: AsyncSession, *, actor: User, document_id: uuid.UUID) -> DocumentPublic:
    return document_public(await _visible_or_raise(db, actor=actor, document_id=document_id))


async def list_for_character(
    db: AsyncSession, *, actor: User, character_id: str
) -> list[DocumentPublic]:
    admin_service.require_admin(actor)
    character = await _character_or_raise(db, character_id)
    rows = await db.exec(
        select(Document)
        .where(Document.character_id == character.id)
        .order_by(col(Document.created_at).desc())
    )
    return [document_public(row) for row in rows.all()]


async def list_for_session(
    db: AsyncSession, *, actor: User, session_id: uuid.UUID
) -> list[DocumentPublic]:
    session = await conversations_service.get_owned_or_raise(db, actor=actor, session_id=session_id)
    rows = await db.exec(_documents_of(session.id).order_by(col(Document.created_at).desc()))
    return [document_public(row) for row in rows.all()]


async def _remove_vectors(document: Document, vector_store: VectorStore) -> None:
    if document.embedder:
        await vector_store.delete_document(
            space=document.embedder, scope=document_scope(document), document_id=str(document.id)
        )


async def delete_document(
    db: AsyncSession,
    *,
    actor: User,
    document_id: uuid.UUID,
    files: FileStore,
    vector_store: VectorStore,
) -> None:
    document = await _visible_or_raise(db, actor=actor, document_id=document_id)
    await purge_documents(db, [document], files=files, vector_store=vector_store)
    log.info("document.deleted", document_id=str(document_id))


async def purge_documents(
    db: AsyncSession,
    documents: list[Document],
    *,
    files: FileStore,
    vector_store: VectorStore,
) -> None:
    """Remove vectors first (a failure leaves everything in place), then files, then rows."""
    for document in documents:
        await _remove_vectors(document, vector_store)
    for document in documents:
        await files.delete(document.storage_key)
        await db.delete(document)
    await db.commit()


def _documents_of(session_id: uuid.UUID) -> SelectOfScalar[Document]:
    return select(Document).where(Document.session_id == session_id)


async def purge_session_documents(
    db: AsyncSession, *, session_id: uuid.UUID, files: FileStore, vector_store: VectorStore
) -> None:
    """Called before a session is deleted: its rows would cascade, its vectors would not."""
    rows = await db.exec(_documents_of(session_id))
    await purge_documents(db, list(rows.all()), files=files, vector_store=vector_store)


async def reindex_document(
    db: AsyncSession, *, actor: User, document_id: uuid.UUID, vector_store: VectorStore
) -> DocumentPublic:
    """Queue the document for extraction and embedding again (old vectors go first)."""
    document = await _visible_or_raise(db, actor=actor, document_id=document_id)
    if document.status not in (DocumentStatus.READY, DocumentStatus.FAILED):
        raise ConflictError("This document is still being processed.")
    await _remove_vectors(document, vector_store)
    document.status, document.progress, document.error = DocumentStatus.QUEUED, 0.0, None
    document.embedder = ""
    db.add(document)
    await db.commit()
    await db.refresh(document)
    return document_public(document)


async def delete_session_and_documents(
    db: AsyncSession,
    *,
    actor: User,
    session_id: uuid.UUID,
    files: FileStore,
    vector_store: VectorStore,
) -> None:
    """Delete a conversation with its uploaded files and their vectors.

    The documents go first (vectors, then files, then rows), outside the transaction
    that deletes the conversation. That transaction locks the conversation before it
    looks for documents again: an upload that got in meanwhile is purged in another
    round, and one that comes after finds the conversation gone (see _check_room).
    Rounds are few: a conversation holds at most MAX_DOCUMENTS_PER_SESSION documents.
    """
    session = await conversations_service.get_owned_or_raise(db, actor=actor, session_id=session_id)
    # Before the documents go; checked again once the conversation is locked (a send
    # that starts between the two leaves the conversation, its documents gone).
    await conversations_service.refuse_while_replying(db, session.id)
    for _ in range(_DELETE_ROUNDS):
        await purge_session_documents(
            db, session_id=session.id, files=files, vector_store=vector_store
        )
        await _lock_conversation(db, session.id, deleting=True)
        if (await db.exec(_documents_of(session.id).limit(1))).first() is None:
            break
        await db.commit()  # added meanwhile: unlock (nothing was written), another round
    await conversations_service.delete_session(db, actor=actor, session_id=session.id)


async def list_knowledge_bases(
    db: AsyncSession, *, actor: User, character_id: str | None = None
) -> list[KnowledgeBasePublic]:
    """Every character (drafts too) with its document counts; admins only."""
    admin_service.require_admin(actor)
    ready = func.sum(case((col(Document.status) == DocumentStatus.READY, 1), else_=0))
    counted = await db.exec(
        select(Document.character_id, func.count(), ready)
        .where(col(Document.character_id).is_not(None))
        .group_by(col(Document.character_id))
    )
    counts = {row[0]: (int(row[1]), int(row[2] or 0)) for row in counted.all()}
    statement = select(Character).order_by(col(Character.name))
    if character_id is not None:
        statement = statement.where(Character.id == character_id)
    return [
        KnowledgeBasePublic(
            character_id=character.id,
            character_name=character.name,
            character_status=str(character.status),
            portrait=character.portrait,
            documents=counts.get(character.id, (0, 0))[0],
            ready=counts.get(character.id, (0, 0))[1],
        )
        for character in (await db.exec(statement)).all()
    ]


async def get_knowledge_base(
    db: AsyncSession, *, actor: User, character_id: str
) -> KnowledgeBasePublic:
    found = await list_knowledge_bases(db, actor=actor, character_id=character_id)
    if not found:
        raise NotFoundError("No such character.")
    return found[0]
