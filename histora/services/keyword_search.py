"""BM25 keyword search over chunk texts (bm25s, English stemming and stopwords).

Indexes are built per scope from the database's chunk texts and kept in a small
in-process cache; a version token from the caller says when one is stale.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

_WORD = re.compile(r"(?u)\b\w\w+\b")  # bm25s's own default: words of 2+ characters
_local = threading.local()


def _stemmer() -> Any:
    # PyStemmer objects are not thread-safe, and indexes are built in worker threads.
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        import Stemmer

        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def _stopwords() -> frozenset[str]:
    cached: frozenset[str] | None = getattr(_stopwords, "cached", None)
    if cached is None:
        # NLTK's 179 English stopwords rather than Lucene's 33: questions are full of
        # "what", "should", "how", "about", which would otherwise match nearly every chunk.
        from bm25s.stopwords import STOPWORDS_EN_PLUS

        cached = frozenset(STOPWORDS_EN_PLUS)
        _stopwords.cached = cached  # type: ignore[attr-defined]
    return cached


_STEMS: dict[str, str] = {}  # word -> stem, shared by all threads (dict ops are atomic)
_MAX_STEMS = 500_000


def analyse(text: str) -> list[str]:
    """Lowercased words minus English stopwords, Snowball-stemmed ("angered" -> "anger")."""
    stopwords = _stopwords()
    stems = _STEMS
    if len(stems) > _MAX_STEMS:
        stems.clear()
    tokens = []
    # Each distinct word is stemmed once: this halves the build time of a large index.
    for word in _WORD.findall(text.lower()):
        if word in stopwords:
            continue
        stem = stems.get(word)
        if stem is None:
            stem = stems[word] = _stemmer().stemWord(word)
        tokens.append(stem)
    return tokens


def _idf(documents: int, frequency: int) -> float:
    # Lucene's BM25 idf, the variant bm25s scores with by default; an unknown term has df 0.
    return math.log(1 + (documents - frequency + 0.5) / (frequency + 0.5))


class KeywordIndex:
    """A BM25 index over (chunk_id, text) pairs. Immutable once built; searches are thread-safe."""

    def __init__(self, chunk_ids: Sequence[str], retriever: Any) -> None:
        self._chunk_ids = np.array(chunk_ids, dtype=object)
        self._positions = {chunk_id: n for n, chunk_id in enumerate(chunk_ids)}
        self._retriever = retriever
        self._vocabulary: dict[str, int] = dict(retriever.vocab_dict) if retriever else {}

    @classmethod
    def build(cls, items: Sequence[tuple[str, str]]) -> KeywordIndex:
        if not items:
            return cls([], None)
        import bm25s

        retriever = bm25s.BM25()
        retriever.index([analyse(text) for _, text in items], show_progress=False)
        return cls([chunk_id for chunk_id, _ in items], retriever)

    def __len__(self) -> int:
        return len(self._chunk_ids)

    def search(
        self,
        query: str,
        k: int,
        *,
        min_coverage: float = 0.0,
        exempt: Collection[str] = (),
    ) -> list[tuple[str, float]]:
        """The k best (chunk_id, BM25 score) pairs, best first; only scores above zero.

        ``min_coverage`` (0..1) keeps only chunks that contain enough of the query: the
        idf-weighted share of the query's terms present in the chunk. Terms the index has
        never seen weigh as much as the rarest possible term, so a query about something
        absent from the corpus cannot match on its one common word. Chunks in ``exempt``
        (found relevant by another retriever) need not clear it.
        """
        terms = list(dict.fromkeys(analyse(query)))
        if not terms or self._retriever is None or k < 1:
            return []
        total, coverage = self._score(terms)
        passes = coverage >= min_coverage - 1e-9
        passes[[self._positions[c] for c in exempt if c in self._positions]] = True
        eligible = np.flatnonzero((total > 0) & passes)
        if eligible.size == 0:
            return []
        best = eligible[np.argsort(-total[eligible], kind="stable")[:k]]
        return [(str(self._chunk_ids[i]), float(total[i])) for i in best]

    def _score(self, terms: list[str]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per chunk: the BM25 score and the idf-weighted share of ``terms`` it contains."""
        documents = len(self._chunk_ids)
        total = np.zeros(documents, dtype=np.float64)
        matched = np.zeros(documents, dtype=np.float64)
        weight_sum = 0.0
        for term in terms:
            if term not in self._vocabulary:
                weight_sum += _idf(documents, 0)
                continue
            scores = np.asarray(self._retriever.get_scores([term]), dtype=np.float64)
            present = scores > 0
            weight = _idf(documents, int(np.count_nonzero(present)))
            weight_sum += weight
            total += scores
            matched += np.where(present, weight, 0.0)
        return total, matched / weight_sum


Loader = Callable[[], Awaitable[Sequence[tuple[str, str]]]]


class KeywordIndexCache:
    """Keyword indexes per scope, each valid for one version token; LRU of ``max_scopes``.

    Safe for one process: the map is guarded by a lock, and builds of the same scope are
    serialised so a burst of queries after a change builds the new index once.
    """

    def __init__(self, max_scopes: int = 64) -> None:
        if max_scopes < 1:
            raise ValueError("max_scopes must be at least 1")
        self._max_scopes = max_scopes
        self._entries: OrderedDict[str, tuple[str, KeywordIndex]] = OrderedDict()
        self._lock = threading.Lock()
        self._build_locks: dict[str, threading.Lock] = {}
        self.builds = 0  # how many indexes were built (for tests and benchmarks)

    def get(self, scope: str, version: str) -> KeywordIndex | None:
        with self._lock:
            entry = self._entries.get(scope)
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end(scope)
            return entry[1]

    def put(self, scope: str, version: str, index: KeywordIndex) -> None:
        with self._lock:
            self._entries[scope] = (version, index)
            self._entries.move_to_end(scope)
            while len(self._entries) > self._max_scopes:
                evicted, _ = self._entries.popitem(last=False)
                self._build_locks.pop(evicted, None)

    def invalidate(self, scope: str) -> None:
        with self._lock:
            self._entries.pop(scope, None)

    async def get_or_build(self, scope: str, version: str, load: Loader) -> KeywordIndex:
        """The cached index, or one built from ``load()`` (a worker thread does the indexing)."""
        import asyncio

        index = self.get(scope, version)
        if index is not None:
            return index
        items = await load()
        return await asyncio.to_thread(self._build_once, scope, version, items)

    def _build_once(
        self, scope: str, version: str, items: Sequence[tuple[str, str]]
    ) -> KeywordIndex:
        with self._lock:
            build_lock = self._build_locks.setdefault(scope, threading.Lock())
        with build_lock:
            index = self.get(scope, version)  # another thread may have just built it
            if index is None:
                index = KeywordIndex.build(items)
                self.builds += 1
                self.put(scope, version, index)
            return index
