"""Background ingestion: extract, chunk, embed and store one queued document at a time.

Progress lives in the document row (status + a 0..1 fraction), so every front end
and every worker process sees the same picture. Jobs are claimed with a
conditional UPDATE, so two workers can never take the same document. Embedding
is over 90% of the time; storing batch n overlaps with embedding batch n + 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy import delete, update
from sqlmodel import col, select

from histora.db import SessionFactory, session_scope
from histora.errors import HistoraError
from histora.models.base import utcnow
from histora.models.documents import Document, DocumentChunk, DocumentStatus
from histora.providers.embedders import Embedder, vector_space
from histora.providers.file_store import FileStore
from histora.providers.vector_store import VectorRecord, VectorStore
from histora.services.chunking import TextChunk, chunk_document
from histora.services.extraction import ExtractionLimits, extract
from histora.services.keyword_search import KeywordIndexCache
from histora.services.retrieval import document_scope, warm_keyword_index

log = structlog.get_logger(__name__)

EXTRACTED_PROGRESS = 0.1  # extraction and chunking are a small share of the work
UNEXPECTED_FAILURE = "Ingestion failed unexpectedly. Try re-indexing the document."
STALE_AFTER = timedelta(minutes=5)  # a job with no progress for this long was orphaned


@dataclass(frozen=True)
class IngestionContext:
    session_factory: SessionFactory
    files: FileStore
    embedder: Embedder
    vector_store: VectorStore
    limits: ExtractionLimits
    chunk_size_chars: int
    chunk_overlap_chars: int
    batch_size: int
    # This process's keyword indexes: warmed after ingestion so the next question
    # does not pay for rebuilding a large knowledge base's BM25 index.
    keyword_cache: KeywordIndexCache | None = None

    @property
    def space(self) -> str:
        """The vector space: vectors of different embedders never mix."""
        return vector_space(self.embedder)


class DocumentGoneError(Exception):
    """The document was deleted while it was being ingested."""


async def claim_next(factory: SessionFactory) -> uuid.UUID | None:
    """Take the oldest queued document, or None when the queue is empty."""
    while True:
        async with session_scope(factory) as db:
            candidate = (
                await db.exec(
                    select(Document.id)
                    .where(Document.status == DocumentStatus.QUEUED)
                    .order_by(col(Document.created_at))
                    .limit(1)
                )
            ).first()
            if candidate is None:
                return None
            claimed = await db.exec(
                update(Document)
                .where(col(Document.id) == candidate, col(Document.status) == DocumentStatus.QUEUED)
                .values(
                    status=DocumentStatus.EXTRACTING, progress=0.0, error=None, updated_at=utcnow()
                )
            )
            await db.commit()
            if claimed.rowcount == 1:
                return candidate
            # Another worker took it first: look again.


async def requeue_stale(factory: SessionFactory) -> int:
    """Put back jobs whose worker died (no progress for a while)."""
    async with session_scope(factory) as db:
        result = await db.exec(
            update(Document)
            .where(
                col(Document.status).in_([DocumentStatus.EXTRACTING, DocumentStatus.EMBEDDING]),
                col(Document.updated_at) < utcnow() - STALE_AFTER,
            )
            .values(status=DocumentStatus.QUEUED, progress=0.0, updated_at=utcnow())
        )
        await db.commit()
        return result.rowcount


async def _set_progress(ctx: IngestionContext, document_id: uuid.UUID, **values: object) -> None:
    async with session_scope(ctx.session_factory) as db:
        result = await db.exec(
            update(Document)
            .where(col(Document.id) == document_id)
            .values(updated_at=utcnow(), **values)
        )
        await db.commit()
    if result.rowcount != 1:
        raise DocumentGoneError(str(document_id))


async def _load(ctx: IngestionContext, document_id: uuid.UUID) -> Document:
    async with session_scope(ctx.session_factory) as db:
        document = await db.get(Document, document_id)
        if document is None:
            raise DocumentGoneError(str(document_id))
        return document


async def _extract_chunks(ctx: IngestionContext, document: Document) -> list[TextChunk]:
    data = await ctx.files.load(document.storage_key)

    def work() -> tuple[list[TextChunk], int | None]:
        extracted = extract(data, filename=document.filename, limits=ctx.limits)
        chunks = chunk_document(
            extracted, size_chars=ctx.chunk_size_chars, overlap_chars=ctx.chunk_overlap_chars
        )
        return chunks, extracted.page_count

    chunks, pages = await asyncio.to_thread(work)
    await _replace_chunks(ctx, document.id, chunks, pages=pages)
    return chunks


async def _replace_chunks(
    ctx: IngestionContext, document_id: uuid.UUID, chunks: Sequence[TextChunk], *, pages: int | None
) -> None:
    async with session_scope(ctx.session_factory) as db:
        await db.exec(delete(DocumentChunk).where(col(DocumentChunk.document_id) == document_id))
        if await db.get(Document, document_id) is None:
            raise DocumentGoneError(str(document_id))
        db.add_all(
            DocumentChunk(
                id=_chunk_id(document_id, chunk.ordinal),
                document_id=document_id,
                ordinal=chunk.ordinal,
                page=chunk.page,
                char_start=chunk.char_start,
                char_end=chunk.char_end,
                text=chunk.text,
            )
            for chunk in chunks
        )
        await db.exec(
            update(Document)
            .where(col(Document.id) == document_id)
            .values(
                status=DocumentStatus.EMBEDDING,
                progress=EXTRACTED_PROGRESS,
                pages=pages,
                chunk_count=len(chunks),
                updated_at=utcnow(),
            )
        )
        await db.commit()


def _chunk_id(document_id: uuid.UUID, ordinal: int) -> uuid.UUID:
    """Stable per (document, position): re-storing a batch overwrites instead of duplicating."""
    return uuid.uuid5(document_id, str(ordinal))


async def _embed_and_store(
    ctx: IngestionContext, document: Document, chunks: Sequence[TextChunk]
) -> None:
    scope = document_scope(document)
    pending: asyncio.Task[None] | None = None
    try:
        for start in range(0, len(chunks), ctx.batch_size):
            batch = chunks[start : start + ctx.batch_size]
            vectors = await ctx.embedder.embed_documents([chunk.text for chunk in batch])
            records = [
                VectorRecord(
                    chunk_id=str(_chunk_id(document.id, chunk.ordinal)),
                    document_id=str(document.id),
                    embedding=vector,
                )
                for chunk, vector in zip(batch, vectors, strict=True)
            ]
            if pending is not None:
                await pending
            pending = asyncio.create_task(
                ctx.vector_store.add(space=ctx.space, scope=scope, records=records)
            )
            done = start + len(batch)
            fraction = EXTRACTED_PROGRESS + (1 - EXTRACTED_PROGRESS) * done / len(chunks)
            await _set_progress(ctx, document.id, progress=min(fraction, 0.99))
        if pending is not None:
            await pending
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


async def ingest_document(ctx: IngestionContext, document_id: uuid.UUID) -> DocumentStatus:
    """Run one claimed document to READY or FAILED; never raises for a bad document."""
    started = asyncio.get_running_loop().time()
    document: Document | None = None
    try:
        document = await _load(ctx, document_id)
        chunks = await _extract_chunks(ctx, document)
        # Vectors written under an earlier embedder or an interrupted run go first.
        await ctx.vector_store.delete_document(
            space=ctx.space, scope=document_scope(document), document_id=str(document.id)
        )
        await _embed_and_store(ctx, document, chunks)
        await _set_progress(
            ctx, document_id, status=DocumentStatus.READY, progress=1.0, embedder=ctx.space
        )
    except DocumentGoneError:
        log.info("ingest.document_gone", document_id=str(document_id))
        if document is not None:
            await _forget_vectors(ctx, document)
        return DocumentStatus.FAILED
    except Exception as exc:
        reason = exc.public_message if isinstance(exc, HistoraError) else UNEXPECTED_FAILURE
        log.warning(
            "ingest.failed",
            document_id=str(document_id),
            error_type=type(exc).__name__,
            exc_info=not isinstance(exc, HistoraError),
        )
        with contextlib.suppress(DocumentGoneError):
            await _set_progress(ctx, document_id, status=DocumentStatus.FAILED, error=reason)
        return DocumentStatus.FAILED
    await _warm_keyword_index(ctx, document)
    log.info(
        "ingest.ready",
        document_id=str(document_id),
        chunks=len(chunks),
        seconds=round(asyncio.get_running_loop().time() - started, 3),
    )
    return DocumentStatus.READY


async def _warm_keyword_index(ctx: IngestionContext, document: Document) -> None:
    if ctx.keyword_cache is None:
        return
    try:
        async with session_scope(ctx.session_factory) as db:
            await warm_keyword_index(
                db,
                keyword_cache=ctx.keyword_cache,
                character_id=document.character_id,
                session_id=document.session_id,
            )
    except Exception:  # noqa: BLE001 - only an optimisation: the next search builds it
        log.warning("ingest.keyword_warmup_failed", document_id=str(document.id))


async def _forget_vectors(ctx: IngestionContext, document: Document) -> None:
    try:
        await ctx.vector_store.delete_document(
            space=ctx.space, scope=document_scope(document), document_id=str(document.id)
        )
    except Exception:  # noqa: BLE001 - retrieval drops vectors whose chunk rows are gone
        log.warning("ingest.vector_cleanup_failed", document_id=str(document.id))


async def process_pending(ctx: IngestionContext) -> int:
    """Ingest queued documents until none is left; returns how many were processed."""
    processed = 0
    while (document_id := await claim_next(ctx.session_factory)) is not None:
        await ingest_document(ctx, document_id)
        processed += 1
    return processed
