"""BM25 keyword search: analysis, scoring, the coverage floor and the per-scope cache."""

from __future__ import annotations

import asyncio

import pytest

from histora.services.keyword_search import KeywordIndex, KeywordIndexCache, analyse

CHUNKS = [
    ("anger", "Anger is a brief madness; the wise man restrains his anger."),
    ("angered", "He was angered by the insults of the crowd, yet said nothing."),
    ("sea", "The sea was calm and the ships sailed at dawn toward the islands."),
    ("moons", "Through the telescope I saw four moons circling Jupiter."),
    ("living", "Living well means living according to nature and reason."),
]


@pytest.fixture(scope="module")
def index() -> KeywordIndex:
    return KeywordIndex.build(CHUNKS)


def test_analyse_lowercases_stems_and_drops_stopwords() -> None:
    assert analyse("What should I do about the Angering crowds?") == ["anger", "crowd"]
    assert analyse("the of and what is it about") == []


def test_search_finds_other_forms_of_a_word(index: KeywordIndex) -> None:
    hits = dict(index.search("angers", 5))

    assert set(hits) == {"anger", "angered"}
    assert hits["anger"] > hits["angered"] > 0  # two mentions beat one


def test_snowball_stemming_does_not_join_angry_and_anger(index: KeywordIndex) -> None:
    # English stemmers keep "angry" (angri) apart from "anger"; the vector side of
    # hybrid retrieval is what connects them.
    assert index.search("angry", 5) == []


def test_search_ranks_best_first_and_limits_to_k(index: KeywordIndex) -> None:
    hits = index.search("living according to nature on a calm sea", 2)

    assert [chunk_id for chunk_id, _ in hits] == ["living", "sea"]
    assert hits[0][1] > hits[1][1] > 0


def test_stopword_only_query_returns_nothing(index: KeywordIndex) -> None:
    assert index.search("what is it that they were about to do", 5) == []


def test_empty_index_and_empty_query_return_nothing() -> None:
    empty = KeywordIndex.build([])
    assert empty.search("anger", 5) == []
    assert len(empty) == 0
    assert KeywordIndex.build(CHUNKS).search("   ", 5) == []


def test_min_coverage_drops_chunks_matching_only_a_minor_part_of_the_query(
    index: KeywordIndex,
) -> None:
    query = "pizza delivery prices near the sea"

    assert [chunk_id for chunk_id, _ in index.search(query, 5)] == ["sea"]
    assert index.search(query, 5, min_coverage=0.5) == []


def test_exempt_chunks_need_not_clear_the_coverage_floor(index: KeywordIndex) -> None:
    query = "pizza delivery prices near the sea"

    hits = index.search(query, 5, min_coverage=0.5, exempt={"sea", "unknown-id"})

    assert [chunk_id for chunk_id, _ in hits] == ["sea"]
    assert index.search(query, 5, min_coverage=0.5, exempt={"moons"}) == []  # no match at all


def test_min_coverage_keeps_chunks_with_the_distinctive_terms(index: KeywordIndex) -> None:
    hits = index.search("telescope moons", 5, min_coverage=0.5)
    partial = index.search("telescope moons of saturn", 5, min_coverage=0.5)

    assert [chunk_id for chunk_id, _ in hits] == ["moons"]
    assert [chunk_id for chunk_id, _ in partial] == ["moons"]  # 2 of 3 rare terms


async def test_cache_builds_once_per_version() -> None:
    cache = KeywordIndexCache()
    loads = 0

    async def load() -> list[tuple[str, str]]:
        nonlocal loads
        loads += 1
        return CHUNKS

    first = await cache.get_or_build("character:a", "v1", load)
    again = await cache.get_or_build("character:a", "v1", load)

    assert first is again and loads == 1 and cache.builds == 1


async def test_cache_rebuilds_when_the_version_changes() -> None:
    cache = KeywordIndexCache()
    corpus = list(CHUNKS)

    async def load() -> list[tuple[str, str]]:
        return list(corpus)

    before = await cache.get_or_build("character:a", "v1", load)
    corpus.append(("new", "A fresh letter about the aqueducts of Rome."))
    stale = await cache.get_or_build("character:a", "v1", load)
    after = await cache.get_or_build("character:a", "v2", load)

    assert stale.search("aqueducts", 3) == []
    assert [chunk_id for chunk_id, _ in after.search("aqueducts", 3)] == ["new"]
    assert before is stale and cache.builds == 2


async def test_cache_keeps_scopes_apart_and_evicts_the_least_recently_used() -> None:
    cache = KeywordIndexCache(max_scopes=2)

    async def load() -> list[tuple[str, str]]:
        return CHUNKS

    await cache.get_or_build("character:a", "v", load)
    await cache.get_or_build("session:b", "v", load)
    assert cache.get("character:a", "v") is not None  # now the most recently used
    await cache.get_or_build("session:c", "v", load)

    assert cache.get("session:b", "v") is None
    assert cache.get("character:a", "v") is not None
    assert cache.get("session:c", "v") is not None
    assert cache.get("session:c", "other") is None


async def test_cache_builds_once_under_concurrent_misses() -> None:
    cache = KeywordIndexCache()

    async def load() -> list[tuple[str, str]]:
        await asyncio.sleep(0.01)
        return CHUNKS * 200

    indexes = await asyncio.gather(
        *(cache.get_or_build("character:a", "v", load) for _ in range(6))
    )

    assert cache.builds == 1
    assert all(index is indexes[0] for index in indexes)


def test_cache_invalidate_forgets_a_scope() -> None:
    cache = KeywordIndexCache()
    cache.put("character:a", "v", KeywordIndex.build(CHUNKS))

    cache.invalidate("character:a")

    assert cache.get("character:a", "v") is None
