"""Hybrid retrieval over real Document/DocumentChunk rows, the fake embedder and vector store."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from sqlmodel import delete
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import InvalidInputError
from histora.models import Character, User
from histora.models.chat import ChatSession
from histora.models.documents import Document, DocumentChunk, DocumentScope, DocumentStatus
from histora.providers.embedders import vector_space
from histora.providers.fakes import FakeEmbedder, FakeVectorStore
from histora.providers.vector_store import VectorRecord
from histora.services.keyword_search import KeywordIndexCache
from histora.services.retrieval import (
    Passage,
    RetrievalMode,
    document_scope,
    reciprocal_rank_fusion,
    retrieve,
)
from tests.factories import make_character, make_user

XANTHIPPE = "Xanthippe the wife was known for her sharp temper and scolding tongue."
FILLER = [
    "Socrates would say many things to many people, and Socrates would say them again.",
    "Socrates liked to say that he knew nothing; Socrates would say so in the market.",
    "In the gymnasium the young men say that Socrates asks questions all day long.",
    "The oracle at Delphi named no man wiser, and the jurors heard it said.",
]


@dataclass
class World:
    db: AsyncSession
    embedder: FakeEmbedder = field(default_factory=FakeEmbedder)
    store: FakeVectorStore = field(default_factory=FakeVectorStore)
    cache: KeywordIndexCache = field(default_factory=KeywordIndexCache)

    async def add_document(
        self,
        texts: Sequence[str],
        *,
        character: Character | None = None,
        session: ChatSession | None = None,
        status: DocumentStatus = DocumentStatus.READY,
        filename: str = "source.txt",
    ) -> tuple[Document, list[DocumentChunk]]:
        document = Document(
            scope=DocumentScope.CHARACTER if character else DocumentScope.SESSION,
            character_id=character.id if character else None,
            session_id=session.id if session else None,
            filename=filename,
            size_bytes=sum(len(text) for text in texts),
            sha256=uuid.uuid4().hex,
            storage_key=uuid.uuid4().hex,
            chunk_count=len(texts),
            status=status,
        )
        self.db.add(document)
        await self.db.flush()
        chunks, offset = [], 0
        for ordinal, text in enumerate(texts):
            chunk = DocumentChunk(
                document_id=document.id,
                ordinal=ordinal,
                page=ordinal + 1,
                char_start=offset,
                char_end=offset + len(text),
                text=text,
            )
            offset += len(text) + 1
            chunks.append(chunk)
            self.db.add(chunk)
        await self.db.commit()
        vectors = await self.embedder.embed_documents(texts)
        await self.store.add(
            space=vector_space(self.embedder),
            scope=document_scope(document),
            records=[
                VectorRecord(str(chunk.id), str(document.id), vector)
                for chunk, vector in zip(chunks, vectors, strict=True)
            ],
        )
        return document, chunks

    async def search(
        self,
        query: str,
        *,
        character: Character | None = None,
        session: ChatSession | None = None,
        k: int = 5,
        min_similarity: float = 0.25,
        mode: RetrievalMode = "hybrid",
    ) -> list[Passage]:
        return await retrieve(
            self.db,
            embedder=self.embedder,
            vector_store=self.store,
            keyword_cache=self.cache,
            character_id=character.id if character else None,
            session_id=session.id if session else None,
            query=query,
            k=k,
            candidates=20,
            min_similarity=min_similarity,
            mode=mode,
        )


@pytest.fixture
def world(db: AsyncSession) -> World:
    return World(db)


@pytest.fixture
async def character(db: AsyncSession) -> Character:
    return await make_character(db)


async def make_session(db: AsyncSession, user: User, character: Character) -> ChatSession:
    session = ChatSession(user_id=user.id, character_id=character.id)
    db.add(session)
    await db.commit()
    return session


def texts(passages: Sequence[Passage]) -> list[str]:
    return [passage.text for passage in passages]


# reciprocal_rank_fusion


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], k=60))

    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)


def test_rrf_orders_best_first_and_breaks_ties_by_best_rank() -> None:
    fused = reciprocal_rank_fusion([["a", "b"], ["b", "a"], ["c"]], k=60)

    assert [item for item, _ in fused] == ["a", "b", "c"]  # a and b tie; a came first
    assert reciprocal_rank_fusion([]) == [] and reciprocal_rank_fusion([[], []]) == []


def test_rrf_counts_a_duplicate_within_one_ranking_once() -> None:
    assert dict(reciprocal_rank_fusion([["a", "a", "b"]]))["b"] == pytest.approx(1 / 62)


# retrieve


async def test_retrieve_returns_the_matching_passage_with_its_location(
    world: World, character: Character
) -> None:
    document, chunks = await world.add_document([*FILLER, XANTHIPPE], character=character)

    [best, *_] = await world.search("Xanthippe temper", character=character)

    assert best.text == XANTHIPPE
    assert best.chunk_id == chunks[-1].id and best.document_id == document.id
    assert best.document_name == "source.txt" and best.page == len(FILLER) + 1
    assert (best.char_start, best.char_end) == (chunks[-1].char_start, chunks[-1].char_end)
    assert best.score == pytest.approx(1.0)  # first for both retrievers
    assert best.similarity is not None and best.keyword_score is not None


async def test_hybrid_beats_vector_only_on_a_rare_name(world: World, character: Character) -> None:
    await world.add_document([*FILLER, XANTHIPPE], character=character)
    query = "What did Socrates say about Xanthippe his wife"

    vector = await world.search(query, character=character, mode="vector", min_similarity=0.2)
    keyword = await world.search(query, character=character, mode="keyword")
    hybrid = await world.search(query, character=character, min_similarity=0.2)

    # Chunks full of "Socrates ... say" look closer to the vector side than the answer;
    # BM25 ranks the rare name first, and fusion lifts the answer into the top 2.
    assert texts(vector).index(XANTHIPPE) == 3
    assert texts(keyword) == [XANTHIPPE]  # the others match too little of the query
    assert texts(hybrid).index(XANTHIPPE) == 1
    assert set(texts(vector)) <= set(texts(hybrid))


async def test_session_documents_never_reach_another_scope(
    world: World, character: Character, db: AsyncSession, user: User
) -> None:
    owner_session = await make_session(db, user, character)
    other_session = await make_session(db, await make_user(db), character)
    await world.add_document(FILLER, character=character)
    await world.add_document([XANTHIPPE], session=owner_session, filename="private.txt")

    for scopes in (
        {"character": character},
        {"session": other_session},
        {"character": character, "session": other_session},
    ):
        for mode in ("hybrid", "vector", "keyword"):
            found = await world.search("Xanthippe temper scolding", mode=mode, **scopes)  # type: ignore[arg-type]
            assert XANTHIPPE not in texts(found)

    mine = await world.search("Xanthippe temper", character=character, session=owner_session)
    assert texts(mine)[0] == XANTHIPPE and mine[0].document_name == "private.txt"


async def test_documents_that_are_not_ready_are_excluded(
    world: World, character: Character
) -> None:
    await world.add_document(FILLER, character=character)
    for status in (DocumentStatus.QUEUED, DocumentStatus.EMBEDDING, DocumentStatus.FAILED):
        await world.add_document([XANTHIPPE], character=character, status=status)

    for mode in ("hybrid", "vector", "keyword"):
        found = await world.search("Xanthippe temper", character=character, mode=mode)  # type: ignore[arg-type]
        assert XANTHIPPE not in texts(found)


async def test_deleted_chunks_are_excluded_even_if_vectors_remain(
    world: World, character: Character, db: AsyncSession
) -> None:
    document, _ = await world.add_document([*FILLER, XANTHIPPE], character=character)
    before = await world.search("Xanthippe temper", character=character)  # warms the keyword cache
    assert texts(before)[0] == XANTHIPPE

    await db.exec(delete(DocumentChunk).where(DocumentChunk.document_id == document.id))  # type: ignore[call-overload, arg-type]
    await db.commit()

    assert (
        await world.store.count(space=vector_space(world.embedder), scope=document_scope(document))
        == 5
    )
    for mode in ("hybrid", "vector", "keyword"):
        assert await world.search("Xanthippe temper", character=character, mode=mode) == []  # type: ignore[arg-type]


async def test_min_similarity_filters_vector_hits(world: World, character: Character) -> None:
    await world.add_document([*FILLER, XANTHIPPE], character=character)

    loose = await world.search("Xanthippe", character=character, mode="vector", min_similarity=0.1)
    strict = await world.search(
        "Xanthippe", character=character, mode="vector", min_similarity=0.99
    )

    assert texts(loose)[0] == XANTHIPPE
    assert all(passage.similarity is not None and passage.similarity >= 0.1 for passage in loose)
    assert strict == []


async def test_a_query_unrelated_to_the_sources_returns_nothing(
    world: World, character: Character
) -> None:
    await world.add_document([*FILLER, XANTHIPPE], character=character)

    for mode in ("hybrid", "vector", "keyword"):
        found = await world.search(
            "cheap pizza delivery prices near the market",
            character=character,
            mode=mode,  # type: ignore[arg-type]
        )
        assert found == []


async def test_a_new_document_invalidates_the_keyword_index(
    world: World, character: Character
) -> None:
    await world.add_document(FILLER, character=character)
    assert await world.search("Xanthippe", character=character, mode="keyword") == []

    await world.add_document([XANTHIPPE], character=character)

    assert texts(await world.search("Xanthippe", character=character, mode="keyword")) == [
        XANTHIPPE
    ]
    assert world.cache.builds == 2


async def test_a_reindexed_document_invalidates_the_keyword_index(
    world: World, character: Character, db: AsyncSession
) -> None:
    document, chunks = await world.add_document(FILLER, character=character)
    await world.search("Socrates", character=character, mode="keyword")
    await db.exec(delete(DocumentChunk).where(DocumentChunk.id == chunks[0].id))  # type: ignore[call-overload, arg-type]
    db.add(
        DocumentChunk(document_id=document.id, ordinal=99, char_start=0, char_end=9, text=XANTHIPPE)
    )
    document.chunk_count = len(chunks)  # unchanged count: updated_at alone must invalidate
    document.progress = 1.0
    db.add(document)
    await db.commit()

    found = await world.search("Xanthippe", character=character, mode="keyword")

    assert texts(found) == [XANTHIPPE] and world.cache.builds == 2


async def test_blank_query_is_invalid_input(world: World, character: Character) -> None:
    with pytest.raises(InvalidInputError):
        await world.search("   ", character=character)


async def test_no_scope_returns_nothing_without_embedding(world: World) -> None:
    assert await world.search("Xanthippe") == []
    assert world.embedder.calls == []


async def test_an_empty_knowledge_base_returns_nothing(world: World, character: Character) -> None:
    assert await world.search("Xanthippe", character=character) == []


async def test_a_precomputed_query_embedding_is_used(world: World, character: Character) -> None:
    await world.add_document([*FILLER, XANTHIPPE], character=character)
    embedding = world.embedder.vector("Xanthippe temper")
    world.embedder.calls.clear()

    found = await retrieve(
        world.db,
        embedder=world.embedder,
        vector_store=world.store,
        keyword_cache=world.cache,
        character_id=character.id,
        session_id=None,
        query="Xanthippe temper",
        k=3,
        candidates=10,
        min_similarity=0.25,
        mode="vector",
        query_embedding=embedding,
    )

    assert texts(found)[0] == XANTHIPPE and world.embedder.calls == []


async def test_k_limits_the_passages(world: World, character: Character) -> None:
    await world.add_document(FILLER, character=character)

    found = await world.search("Socrates say", character=character, k=2)

    assert len(found) == 2
    assert found[0].score >= found[1].score and 0 < found[1].score <= 1


async def test_keyword_hits_corroborated_by_vectors_skip_the_coverage_floor(
    world: World, character: Character
) -> None:
    await world.add_document([*FILLER, XANTHIPPE], character=character)
    # "Xanthippe" is a small share of this query's terms: alone, BM25 would drop it.
    query = "Xanthippe temper scolding sharpness wisdom youth market oracle jurors gymnasium"

    keyword = await world.search(query, character=character, mode="keyword")
    hybrid = await world.search(query, character=character, min_similarity=0.1)

    assert XANTHIPPE not in texts(keyword)
    [found] = [p for p in hybrid if p.text == XANTHIPPE]
    assert found.similarity is not None and found.keyword_score is not None
