"""Hybrid retrieval: vector similarity plus BM25 keywords, fused by reciprocal rank.

This module does NOT authorize. ``retrieve`` searches whatever scopes it is given; the
callers (the documents/chat services) must check that the actor may read the character's
knowledge base and owns the session before calling it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.orm import Mapped
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import InvalidInputError
from histora.models.documents import Document, DocumentChunk, DocumentStatus
from histora.providers.embedders import Embedder, vector_space
from histora.providers.vector_store import VectorStore
from histora.services.keyword_search import KeywordIndex, KeywordIndexCache

RetrievalMode = Literal["hybrid", "vector", "keyword"]

RRF_K = 60  # the constant of Cormack et al. (2009); damps the weight of top ranks
# A keyword hit that the vector search did not also find must contain at least this
# idf-weighted share of the query's terms: it is what stops a query unrelated to the
# sources from matching on a common word. Hits both retrievers found need no floor.
KEYWORD_MIN_COVERAGE = 0.5


@dataclass(frozen=True)
class Passage:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    document_name: str
    page: int | None
    char_start: int
    char_end: int
    text: str
    score: float  # fused, 0..1 (1 = ranked first by every retriever used)
    similarity: float | None  # cosine similarity, when the vector search found it
    keyword_score: float | None  # BM25 score, when the keyword search found it


@dataclass(frozen=True)
class _ReadyDocument:
    id: uuid.UUID
    scope: str
    version: str


def character_scope(character_id: str) -> str:
    return f"character:{character_id}"


def session_scope(session_id: uuid.UUID) -> str:
    return f"session:{session_id}"


def document_scope(document: Document) -> str:
    """The vector-store/keyword scope a document belongs to."""
    if document.character_id is not None:
        return character_scope(document.character_id)
    assert document.session_id is not None
    return session_scope(document.session_id)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], *, k: int = RRF_K
) -> list[tuple[str, float]]:
    """Items of several best-first rankings by the sum of 1 / (k + rank), best first.

    Ties go to the item with the better single rank, then to the earlier ranking.
    """
    scores: dict[str, float] = {}
    best: dict[str, tuple[int, int]] = {}
    for position, ranking in enumerate(rankings):
        for rank, item in enumerate(dict.fromkeys(ranking), start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
            best[item] = min(best.get(item, (rank, position)), (rank, position))
    return sorted(scores.items(), key=lambda pair: (-pair[1], best[pair[0]]))


async def retrieve(
    db: AsyncSession,
    *,
    embedder: Embedder,
    vector_store: VectorStore,
    keyword_cache: KeywordIndexCache,
    character_id: str | None,
    session_id: uuid.UUID | None,
    query: str,
    k: int,
    candidates: int,
    min_similarity: float,
    mode: RetrievalMode = "hybrid",
    query_embedding: NDArray[np.float32] | None = None,
) -> list[Passage]:
    """The k passages most relevant to ``query`` in a character's knowledge base and/or a
    chat session's documents (only documents whose status is READY).

    NO AUTHORIZATION HAPPENS HERE: callers must have checked that the actor may search
    ``character_id`` and owns ``session_id``.

    Vector hits need ``similarity >= min_similarity``. Keyword hits need to contain
    ``KEYWORD_MIN_COVERAGE`` of the query (idf-weighted) unless the vector search found
    them too. A query unrelated to the sources therefore returns []. Raises
    InvalidInputError for an empty query.

    The ready documents are looked up first, so a scope without any costs one small
    query and no embedding; the read transaction ends before the query is embedded
    (a caller may also embed first and pass ``query_embedding``).
    """
    if not query.strip():
        raise InvalidInputError("Enter something to search for.")
    scopes = [character_scope(character_id)] if character_id is not None else []
    if session_id is not None:
        scopes.append(session_scope(session_id))
    if not scopes or k < 1:
        return []
    documents = await _ready_documents(db, character_id=character_id, session_id=session_id)
    if not documents:
        return []  # nothing to search: no embedding, no vector query (most chats)
    if mode != "keyword" and query_embedding is None:
        await db.commit()  # no transaction stays open across the model call
        query_embedding = await embedder.embed_query(query)
    similarities: dict[str, float] = {}
    keyword_scores: dict[str, float] = {}
    rankings: list[list[str]] = []
    if query_embedding is not None and mode != "keyword":
        similarities = await _vector_candidates(
            vector_store,
            vector_space(embedder),
            scopes,
            documents,
            query_embedding,
            candidates,
            min_similarity,
        )
        rankings.append(list(similarities))
    if mode in ("hybrid", "keyword"):
        keyword_scores = await _keyword_candidates(
            db, keyword_cache, documents, query, candidates, corroborated=similarities.keys()
        )
        rankings.append(list(keyword_scores))
    fused = reciprocal_rank_fusion(rankings)
    best_possible = len(rankings) / (RRF_K + 1)
    return await _load_passages(
        db,
        [(chunk_id, score / best_possible) for chunk_id, score in fused],
        allowed={document.id for document in documents},
        k=k,
        similarities=similarities,
        keyword_scores=keyword_scores,
    )


def ready_in_scope(
    *,
    character_id: str | Mapped[str] | None,
    session_id: uuid.UUID | Mapped[uuid.UUID] | None,
) -> ColumnElement[bool]:
    """Where-clause for the READY documents a search of this scope reads: the character's
    knowledge base and/or the session's own. Values, or columns of an outer query (for a
    correlated check); at least one of the two."""
    conditions = []
    if character_id is not None:
        conditions.append(col(Document.character_id) == character_id)
    if session_id is not None:
        conditions.append(col(Document.session_id) == session_id)
    if not conditions:
        raise ValueError("a scope needs a character or a session")
    return and_(col(Document.status) == DocumentStatus.READY, or_(*conditions))


async def _ready_documents(
    db: AsyncSession, *, character_id: str | None, session_id: uuid.UUID | None
) -> list[_ReadyDocument]:
    if character_id is None and session_id is None:
        return []
    rows = await db.exec(
        select(Document).where(ready_in_scope(character_id=character_id, session_id=session_id))
    )
    return [
        _ReadyDocument(
            id=document.id,
            scope=document_scope(document),
            # Changes whenever the document is re-indexed (updated_at, chunk_count).
            version=f"{document.id}:{document.updated_at.isoformat()}:{document.chunk_count}",
        )
        for document in rows.all()
    ]


async def _vector_candidates(
    vector_store: VectorStore,
    space: str,
    scopes: list[str],
    documents: list[_ReadyDocument],
    embedding: NDArray[np.float32],
    candidates: int,
    min_similarity: float,
) -> dict[str, float]:
    """chunk id -> similarity, best first, for READY documents above the threshold."""
    hits = await vector_store.query(space=space, scopes=scopes, embedding=embedding, k=candidates)
    ready = {str(document.id) for document in documents}
    return {
        hit.chunk_id: hit.similarity
        for hit in hits
        if hit.similarity >= min_similarity and hit.document_id in ready
    }


async def _scope_indexes(
    db: AsyncSession, cache: KeywordIndexCache, documents: list[_ReadyDocument]
) -> list[KeywordIndex]:
    """The BM25 index of each scope the documents belong to, built or from the cache."""
    by_scope: dict[str, list[_ReadyDocument]] = {}
    for document in documents:
        by_scope.setdefault(document.scope, []).append(document)
    indexes: list[KeywordIndex] = []
    for scope, scope_documents in by_scope.items():
        version = _scope_version(scope_documents)
        ids = [document.id for document in scope_documents]

        async def load(ids: list[uuid.UUID] = ids) -> list[tuple[str, str]]:
            return await _chunk_texts(db, ids)

        indexes.append(await cache.get_or_build(scope, version, load))
    return indexes


async def _keyword_candidates(
    db: AsyncSession,
    cache: KeywordIndexCache,
    documents: list[_ReadyDocument],
    query: str,
    candidates: int,
    *,
    corroborated: Collection[str],
) -> dict[str, float]:
    """chunk id -> BM25 score, best first, merged across the scopes' indexes."""
    hits: list[tuple[str, float]] = []
    for index in await _scope_indexes(db, cache, documents):
        hits.extend(
            index.search(query, candidates, min_coverage=KEYWORD_MIN_COVERAGE, exempt=corroborated)
        )
    # Scores of different scopes' indexes are close enough to compare (same analyser, same
    # BM25 parameters); only their idf statistics differ.
    hits.sort(key=lambda hit: -hit[1])
    return dict(hits[:candidates])


async def warm_keyword_index(
    db: AsyncSession,
    *,
    keyword_cache: KeywordIndexCache,
    character_id: str | None,
    session_id: uuid.UUID | None,
) -> None:
    """Build a scope's BM25 index now (after ingestion), not at the next question."""
    documents = await _ready_documents(db, character_id=character_id, session_id=session_id)
    if documents:
        await _scope_indexes(db, keyword_cache, documents)


def _scope_version(documents: list[_ReadyDocument]) -> str:
    joined = "\n".join(sorted(document.version for document in documents))
    return hashlib.sha256(joined.encode()).hexdigest()


async def _chunk_texts(db: AsyncSession, document_ids: list[uuid.UUID]) -> list[tuple[str, str]]:
    rows = await db.exec(
        select(DocumentChunk.id, DocumentChunk.text)
        .where(col(DocumentChunk.document_id).in_(document_ids))
        .order_by(col(DocumentChunk.document_id), col(DocumentChunk.ordinal))
    )
    return [(str(chunk_id), text) for chunk_id, text in rows.all()]


async def _load_passages(
    db: AsyncSession,
    fused: list[tuple[str, float]],
    *,
    allowed: set[uuid.UUID],
    k: int,
    similarities: dict[str, float],
    keyword_scores: dict[str, float],
) -> list[Passage]:
    """The top k fused hits whose chunk still exists in an allowed READY document.

    Vectors can outlive their rows for a moment (a delete in progress), so the rows decide.
    A few spare hits are loaded in the same query to fill the places of dropped ones.
    """
    wanted = fused[: k * 2 + 5]
    if not wanted:
        return []
    ids = [uuid.UUID(chunk_id) for chunk_id, _ in wanted]
    rows = await db.exec(
        select(DocumentChunk, Document.filename)
        .join(Document, col(Document.id) == col(DocumentChunk.document_id))
        .where(col(DocumentChunk.id).in_(ids), Document.status == DocumentStatus.READY)
    )
    found = {
        str(chunk.id): (chunk, filename)
        for chunk, filename in rows.all()
        if chunk.document_id in allowed
    }
    passages = []
    for chunk_id, score in wanted:
        if chunk_id not in found:
            continue
        chunk, filename = found[chunk_id]
        passages.append(
            Passage(
                chunk_id=chunk.id,
                document_id=chunk.document_id,
                document_name=filename,
                page=chunk.page,
                char_start=chunk.char_start,
                char_end=chunk.char_end,
                text=chunk.text,
                score=round(min(score, 1.0), 6),
                similarity=similarities.get(chunk_id),
                keyword_score=keyword_scores.get(chunk_id),
            )
        )
    return passages[:k]
