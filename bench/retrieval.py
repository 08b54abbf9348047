"""Retrieval latency and quality over ../shared/corpus, and latency at 50k chunks.

Ingests every corpus text into its figure's knowledge base (the app's extraction and
chunking, the packaged MiniLM embedder, an in-process Chroma and a migrated SQLite
database, all in a temporary directory), then prints:

1. query latency p50/p95 at corpus size for vector-only, keyword-only and hybrid
   retrieval (``services.retrieval.retrieve``; the query embedding is measured apart
   and excluded, since it costs the same in every mode);
2. recall@1/3/5 on bench/data/retrieval_questions.json, hybrid vs vector vs keyword;
3. latency at --chunks synthetic chunks (default 50k) against the 20 ms p95 target, and
   the Chroma layout comparison (one shared collection with a ``where`` scope filter
   against one collection per scope, which is what ChromaVectorStore does).

    python bench/retrieval.py [--chunks 50000] [--queries 300] [--skip-synthetic]

A benchmark, not a test: it prints figures, never fails on them. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import math
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# ruff: noqa: E402 - the imports below need ROOT on sys.path
from sqlalchemy import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.db import create_engine, create_session_factory
from histora.migrations import upgrade_to_head
from histora.models import User
from histora.models.chat import ChatSession
from histora.models.documents import Document, DocumentChunk, DocumentScope, DocumentStatus
from histora.providers.embedders import LocalOnnxEmbedder, vector_space
from histora.providers.vector_store import ChromaVectorStore, VectorRecord
from histora.services import seed as seed_service
from histora.services.chunking import chunk_document
from histora.services.extraction import ExtractionLimits, extract
from histora.services.keyword_search import KeywordIndexCache
from histora.services.retrieval import (
    Passage,
    RetrievalMode,
    character_scope,
    retrieve,
    session_scope,
)
from histora.settings import Settings

CORPUS = ROOT.parent / "shared" / "corpus"
QUESTIONS = ROOT / "bench" / "data" / "retrieval_questions.json"
TARGET_P95_MS = 20.0
MODES: tuple[RetrievalMode, ...] = ("vector", "keyword", "hybrid")
LARGE_FIGURE = "ibn-khaldun"  # a seeded figure with no corpus text: the synthetic library
LARGE_SHARE = 0.8  # of the synthetic chunks in that one knowledge base; the rest in sessions
SESSION_CHUNKS = 100
NOISE = 0.15  # relative noise on replicated vectors: near-duplicates, not copies
Scope = tuple[str | None, uuid.UUID | None]  # (character_id, session_id)


@dataclass
class Chunk:
    id: uuid.UUID
    document_id: uuid.UUID
    text: str
    vector: np.ndarray


class Precomputed:
    """The real embedder's identity, with query vectors computed beforehand (timed apart)."""

    def __init__(self, inner: LocalOnnxEmbedder) -> None:
        self.name, self.dimension, self.provider_name = inner.name, inner.dimension, "bench"
        self.vectors: dict[str, np.ndarray] = {}

    async def embed_query(self, text: str) -> np.ndarray:
        return self.vectors[text]


@dataclass
class Bench:
    settings: Settings
    session_factory: Any
    embedder: LocalOnnxEmbedder
    store: ChromaVectorStore
    fresh: bool = False  # embed again even when the cache has the vectors
    embedded: int = 0  # chunks embedded in this run (the rest came from the cache)
    queries: Precomputed = field(init=False)

    def __post_init__(self) -> None:
        self.queries = Precomputed(self.embedder)

    async def search(
        self, query: str, scope: Scope, mode: RetrievalMode, cache: KeywordIndexCache, k: int = 5
    ) -> list[Passage]:
        settings = self.settings
        async with self.session_factory() as db:
            return await retrieve(
                db,
                embedder=self.queries,  # type: ignore[arg-type]
                vector_store=self.store,
                keyword_cache=cache,
                character_id=scope[0],
                session_id=scope[1],
                query=query,
                k=k,
                candidates=settings.retrieval_candidates,
                min_similarity=settings.retrieval_min_score,
                mode=mode,
            )

    async def timed_search(
        self, query: str, scope: Scope, mode: RetrievalMode, cache: KeywordIndexCache
    ) -> float:
        started = time.perf_counter()
        await self.search(query, scope, mode, cache)
        return (time.perf_counter() - started) * 1000


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(header)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  " + "  ".join(padded))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


# ------------------------------------------------------------------ setup and ingestion


async def open_bench(tmp: Path, threads: int) -> Bench:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp,
        database_url=f"sqlite:///{tmp / 'bench.db'}",
        seed_on_start=False,
        local_model_autostart=False,
        embedding_threads=threads,
    )
    upgrade_to_head(settings)
    factory = create_session_factory(create_engine(settings))
    async with factory() as db:
        await seed_service.seed_catalogue(db)
    store = ChromaVectorStore(path=tmp / "chroma")
    return Bench(settings, factory, LocalOnnxEmbedder(settings), store)


async def insert_document(
    db: AsyncSession, scope: Scope, filename: str, texts: Sequence[tuple[int | None, str]]
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A READY document and its chunks (page, text), inserted in bulk."""
    document = Document(
        scope=DocumentScope.CHARACTER if scope[0] else DocumentScope.SESSION,
        character_id=scope[0],
        session_id=scope[1],
        filename=filename,
        size_bytes=sum(len(text) for _, text in texts),
        sha256=uuid.uuid4().hex,
        storage_key=uuid.uuid4().hex,
        chunk_count=len(texts),
        status=DocumentStatus.READY,
        progress=1.0,
    )
    db.add(document)
    await db.flush()
    ids = [uuid.uuid4() for _ in texts]
    ends = list(itertools.accumulate(len(text) for _, text in texts))
    rows = [
        {"id": i, "document_id": document.id, "ordinal": n, "page": page,
         "char_start": end - len(text), "char_end": end, "text": text}
        for n, (i, (page, text), end) in enumerate(zip(ids, texts, ends, strict=True))
    ]  # fmt: skip
    connection = await db.connection()
    for start in range(0, len(rows), 5000):
        await connection.execute(insert(DocumentChunk), rows[start : start + 5000])
    await db.commit()
    return document.id, ids


async def add_vectors(
    bench: Bench, scope: Scope, document_id: uuid.UUID, ids: list[uuid.UUID], vectors: np.ndarray
) -> None:
    name = character_scope(scope[0]) if scope[0] else session_scope(scope[1])  # type: ignore[arg-type]
    records = [VectorRecord(str(i), str(document_id), v) for i, v in zip(ids, vectors, strict=True)]
    await bench.store.add(space=vector_space(bench.embedder), scope=name, records=records)


async def embed_cached(bench: Bench, texts: list[str]) -> np.ndarray:
    """Chunk vectors, kept between runs in the cache directory (embedding is the slow part
    of ingestion, and bench/ingest.py is the benchmark that measures it)."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:24]
    path = bench.settings.cache_dir / "bench-embeddings" / f"{bench.embedder.name}-{digest}.npy"
    if path.is_file() and not bench.fresh:
        return np.load(path)
    vectors = await bench.embedder.embed_documents(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    bench.embedded += len(texts)
    return vectors


async def ingest_corpus(bench: Bench) -> tuple[list[Chunk], dict[uuid.UUID, str]]:
    """Every .txt work into its figure's knowledge base (the PDF/DOCX/MD files repeat them)."""
    limits = ExtractionLimits.from_settings(bench.settings)
    chunks: list[Chunk] = []
    names: dict[uuid.UUID, str] = {}
    prepare_s = embed_s = 0.0
    paths = sorted(CORPUS.glob("*.txt"))
    for path in paths:
        started = time.perf_counter()
        extracted = extract(path.read_bytes(), filename=path.name, limits=limits)
        pieces = chunk_document(
            extracted,
            size_chars=bench.settings.chunk_size_chars,
            overlap_chars=bench.settings.chunk_overlap_chars,
        )
        prepare_s += time.perf_counter() - started
        scope: Scope = (path.name.split("__")[0], None)
        async with bench.session_factory() as db:
            texts = [(p.page, p.text) for p in pieces]
            document_id, ids = await insert_document(db, scope, path.name, texts)
        names[document_id] = path.name
        started = time.perf_counter()
        vectors = await embed_cached(bench, [p.text for p in pieces])
        embed_s += time.perf_counter() - started
        await add_vectors(bench, scope, document_id, ids, vectors)
        for chunk_id, piece, vector in zip(ids, pieces, vectors, strict=True):
            chunks.append(Chunk(chunk_id, document_id, piece.text, vector))
    rate = f"{bench.embedded / embed_s:.0f} chunks/s" if bench.embedded else "cached vectors"
    print(
        f"corpus: {len(chunks)} chunks from {len(paths)} texts; extract+chunk {prepare_s:.1f} s, "
        f"embed {embed_s:.1f} s ({rate}; --fresh-embeddings to embed again)"
    )
    return chunks, names


async def embed_queries(bench: Bench, queries: Sequence[str], unrelated: Sequence[str]) -> None:
    times = []
    for query in dict.fromkeys([*queries, *unrelated]):
        started = time.perf_counter()
        bench.queries.vectors[query] = await bench.embedder.embed_query(query)
        times.append((time.perf_counter() - started) * 1000)
    print(
        f"query embedding (excluded below): p50 {percentile(times, 50):.1f} ms, "
        f"p95 {percentile(times, 95):.1f} ms over {len(times)} questions"
    )


def check_phrases(
    questions: list[dict[str, Any]], chunks: list[Chunk], names: dict[uuid.UUID, str]
) -> None:
    by_document: dict[str, list[str]] = {}
    for chunk in chunks:
        by_document.setdefault(names[chunk.document_id], []).append(normalised(chunk.text))
    for q in questions:
        if not any(normalised(q["phrase"]) in t for t in by_document.get(q["document"], [])):
            print(f"  warning: question {q['id']}: no chunk of {q['document']} has {q['phrase']!r}")


# ------------------------------------------------------------------ measurements


async def latency_rows(bench: Bench, plan: list[tuple[str, Scope]], total: int) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for mode in MODES:
        cache = KeywordIndexCache()
        # The first query of each scope builds its keyword index: timed apart, as "cold".
        first = {scope: query for query, scope in reversed(plan)}
        cold = max([await bench.timed_search(q, scope, mode, cache) for scope, q in first.items()])
        times = [
            await bench.timed_search(query, scope, mode, cache)
            for n in range(total)
            for query, scope in [plan[n % len(plan)]]
        ]
        p50, p95 = percentile(times, 50), percentile(times, 95)
        rows.append(
            [mode, len(times), f"{p50:.1f}", f"{p95:.1f}", f"{max(times):.1f}", f"{cold:.0f}"]
        )
    return rows


LATENCY_HEADER = ["mode", "queries", "p50 ms", "p95 ms", "max ms", "cold ms"]


async def recall(bench: Bench, questions: list[dict[str, Any]], unrelated: list[str]) -> None:
    """recall@k on the labelled questions, and how often off-topic questions get passages."""
    ks = (1, 3, 5)
    figures = sorted({q["character"] for q in questions})
    rows, missed = [], {}
    for mode in MODES:
        cache = KeywordIndexCache()
        hits = dict.fromkeys(ks, 0)
        missed[mode] = []
        for q in questions:
            found = await bench.search(q["question"], (q["character"], None), mode, cache, k=5)
            phrase = normalised(q["phrase"])
            good = [
                p.document_name == q["document"] and phrase in normalised(p.text) for p in found
            ]
            for k in ks:
                hits[k] += any(good[:k])
            if not any(good):
                missed[mode].append(str(q["id"]))
        answered = sum(
            [
                bool(await bench.search(text, (figure, None), mode, cache, k=5))
                for text in unrelated
                for figure in figures
            ]
        )
        rates = [f"{hits[k] / len(questions):.2f}" for k in ks]
        rows.append([mode, *rates, f"{answered}/{len(unrelated) * len(figures)}"])
    settings = bench.settings
    table(
        f"recall@k over {len(questions)} labelled questions (min similarity "
        f"{settings.retrieval_min_score}, {settings.retrieval_candidates} candidates per "
        f"retriever); off-topic: {len(unrelated)} unrelated questions x {len(figures)} figures",
        ["mode", "recall@1", "recall@3", "recall@5", "off-topic answered"],
        rows,
    )
    for mode in MODES:
        print(f"  {mode} missed at 5: {' '.join(missed[mode]) or '-'}")
    verdict = "MET" if float(rows[2][3]) >= float(rows[0][3]) else "NOT MET"
    print(f"  hybrid recall@5 >= vector-only recall@5: {verdict}")


async def synthesise(bench: Bench, corpus: list[Chunk], total: int) -> Scope:
    """Fill up to ``total`` chunks: one large knowledge base plus many 100-chunk sessions.

    Texts repeat the corpus chunks; vectors are theirs plus noise, so the index holds
    realistic clusters of near-duplicates rather than random points.
    """
    extra = max(0, total - len(corpus))
    large = int(extra * LARGE_SHARE)
    async with bench.session_factory() as db:
        user = User(email="bench@example.com", display_name="Bench")
        db.add(user)
        await db.flush()
        count = math.ceil((extra - large) / SESSION_CHUNKS)
        sessions = [ChatSession(user_id=user.id, character_id="socrates") for _ in range(count)]
        db.add_all(sessions)
        await db.commit()
    plan: list[tuple[Scope, int]] = [((LARGE_FIGURE, None), large)]
    plan += [
        ((None, s.id), min(SESSION_CHUNKS, extra - large - n * SESSION_CHUNKS))
        for n, s in enumerate(sessions)
    ]
    rng, position, started = np.random.default_rng(42), 0, time.perf_counter()
    dimension = bench.embedder.dimension
    for scope, size in plan:
        for first in range(0, size, 1000):  # documents of up to 1000 chunks
            picks = [corpus[(position + i) % len(corpus)] for i in range(min(1000, size - first))]
            position += len(picks)
            noise = rng.normal(size=(len(picks), dimension)) * NOISE / math.sqrt(dimension)
            vectors = np.stack([c.vector for c in picks]) + noise.astype(np.float32)
            async with bench.session_factory() as db:
                texts = [(None, c.text) for c in picks]
                document_id, ids = await insert_document(
                    db, scope, f"synthetic-{position}.txt", texts
                )
            await add_vectors(bench, scope, document_id, ids, vectors)
    print(
        f"\nsynthetic: {extra} chunks in {time.perf_counter() - started:.0f} s: {large} in one "
        f"knowledge base ({LARGE_FIGURE}), {extra - large} in {len(sessions)} sessions; "
        f"{len(corpus) + extra} chunks in all"
    )
    return (LARGE_FIGURE, sessions[0].id if sessions else None)


def compare_layouts(bench: Bench, scope: Scope) -> None:
    """Raw Chroma queries: one shared collection filtered by scope vs one per scope."""
    client = bench.store._get_client()
    space = vector_space(bench.embedder)
    names = [character_scope(scope[0])] + ([session_scope(scope[1])] if scope[1] else [])  # type: ignore[arg-type]
    shared = client.create_collection(
        "bench_shared", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    step = int(client.get_max_batch_size())
    for collection in client.list_collections():
        if collection.name == shared.name:
            continue
        tag = {"scope": (collection.metadata or {}).get("scope", "")}
        for offset in range(0, collection.count(), step):
            data = collection.get(include=["embeddings", "metadatas"], limit=step, offset=offset)
            metadatas = [{**m, **tag} for m in data["metadatas"]]
            shared.add(ids=data["ids"], embeddings=data["embeddings"], metadatas=metadatas)
    per_scope = [bench.store._collection(space, name, create=False) for name in names]
    layouts = {
        "shared collection + where": lambda v: shared.query(
            query_embeddings=[v], n_results=30, where={"scope": {"$in": names}}
        ),
        "one collection per scope": lambda v: [
            c.query(query_embeddings=[v], n_results=30) for c in per_scope
        ],
    }
    rows = []
    for label, run in layouts.items():
        times = []
        for vector in bench.queries.vectors.values():
            started = time.perf_counter()
            run(vector.tolist())
            times.append((time.perf_counter() - started) * 1000)
        rows.append(
            [label, shared.count(), f"{percentile(times, 50):.1f}", f"{percentile(times, 95):.1f}"]
        )
    table(
        f"Chroma layouts: raw vector query (k=30) of {' + '.join(names)}",
        ["layout", "vectors", "p50 ms", "p95 ms"],
        rows,
    )


# ------------------------------------------------------------------ main


async def main(args: argparse.Namespace) -> None:
    labelled = json.loads(QUESTIONS.read_text())
    questions, unrelated = labelled["questions"], labelled["unrelated"]
    with tempfile.TemporaryDirectory(prefix="histora-bench-retrieval-") as tmp:
        bench = await open_bench(Path(tmp), args.threads)
        bench.fresh = args.fresh_embeddings
        corpus, names = await ingest_corpus(bench)
        check_phrases(questions, corpus, names)
        await embed_queries(bench, [q["question"] for q in questions], unrelated)
        plan: list[tuple[str, Scope]] = [(q["question"], (q["character"], None)) for q in questions]
        rows = await latency_rows(bench, plan, args.queries)
        table(
            f"latency at corpus size ({len(corpus)} chunks; each question in its figure's "
            "knowledge base)",
            LATENCY_HEADER,
            rows,
        )
        await recall(bench, questions, unrelated)
        if args.skip_synthetic:
            return
        scope = await synthesise(bench, corpus, args.chunks)
        rows = await latency_rows(bench, [(q["question"], scope) for q in questions], args.queries)
        for row in rows:
            row.append("MET" if float(row[3]) <= TARGET_P95_MS else "NOT MET")
        table(
            f"latency at {args.chunks} chunks (each query searches {LARGE_FIGURE}'s "
            f"{int((args.chunks - len(corpus)) * LARGE_SHARE)} chunks + one session's "
            f"{SESSION_CHUNKS}; target p95 <= {TARGET_P95_MS:.0f} ms)",
            [*LATENCY_HEADER, "target"],
            rows,
        )
        print("  cold ms: the slowest first query of a scope, which builds its keyword index")
        if not args.skip_layouts:
            compare_layouts(bench, scope)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=50_000, help="synthetic total (50000)")
    parser.add_argument("--queries", type=int, default=300, help="timed queries per mode (300)")
    parser.add_argument("--threads", type=int, default=2, help="embedder threads (2)")
    parser.add_argument("--fresh-embeddings", action="store_true", help="ignore cached vectors")
    parser.add_argument("--skip-synthetic", action="store_true", help="corpus size only")
    parser.add_argument("--skip-layouts", action="store_true", help="no Chroma layout comparison")
    asyncio.run(main(parser.parse_args()))
