"""Ingestion throughput over ../shared/corpus: per stage and end to end.

Stages, each timed on its own: extraction (pages/s for PDFs, MB/s overall),
chunking (chunks/s), the embedder alone on exactly the chunks the pipeline will
embed (its raw rate, the baseline), and vector-store writes. Then the real
pipeline: every corpus file uploaded through ``services.documents`` into its
character's knowledge base and ingested by ``services.ingestion`` (file store,
SQLite, the local ONNX embedder, an in-process persistent Chroma), and its rate
as a fraction of the embedder's raw rate, measured in the same run (target >= 0.8).

    python bench/ingest.py [--corpus DIR] [--max-mb N] [--batch-size N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlmodel import select  # noqa: E402

from histora import deps  # noqa: E402
from histora.log_config import configure_logging  # noqa: E402
from histora.migrations import upgrade_to_head  # noqa: E402
from histora.models.documents import Document, DocumentStatus  # noqa: E402
from histora.providers.vector_store import VectorRecord  # noqa: E402
from histora.services import auth as auth_service  # noqa: E402
from histora.services import documents as documents_service  # noqa: E402
from histora.services import seed as seed_service  # noqa: E402
from histora.services.chunking import TextChunk, chunk_document  # noqa: E402
from histora.services.extraction import ExtractedDocument, extract  # noqa: E402
from histora.services.ingestion import process_pending  # noqa: E402
from histora.settings import Settings  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
SUFFIXES = {".pdf", ".docx", ".txt", ".md"}
TARGET_RATIO = 0.8


@dataclass
class Prepared:
    path: Path
    character_id: str
    data: bytes
    extracted: ExtractedDocument
    chunks: list[TextChunk]


def corpus_files(corpus: Path, max_mb: float | None) -> list[Path]:
    files = sorted(p for p in corpus.iterdir() if p.suffix in SUFFIXES and "__" in p.name)
    if max_mb is None:
        return files
    chosen, total = [], 0
    for path in sorted(files, key=lambda p: p.stat().st_size):
        if total + path.stat().st_size > max_mb * 1024 * 1024:
            break
        chosen.append(path)
        total += path.stat().st_size
    return chosen


def stage_extract_and_chunk(
    files: Sequence[Path], settings: Settings, container: deps.Container
) -> tuple[list[Prepared], dict[str, float]]:
    prepared: list[Prepared] = []
    extract_seconds = chunk_seconds = pdf_seconds = 0.0
    pdf_pages = 0
    for path in files:
        data = path.read_bytes()
        started = time.perf_counter()
        extracted = extract(data, filename=path.name, limits=container.extraction_limits)
        elapsed = time.perf_counter() - started
        extract_seconds += elapsed
        if extracted.page_count:
            pdf_seconds += elapsed
            pdf_pages += extracted.page_count
        started = time.perf_counter()
        chunks = chunk_document(
            extracted,
            size_chars=settings.chunk_size_chars,
            overlap_chars=settings.chunk_overlap_chars,
        )
        chunk_seconds += time.perf_counter() - started
        prepared.append(Prepared(path, path.name.split("__")[0], data, extracted, chunks))
    total_bytes = sum(len(p.data) for p in prepared)
    total_chunks = sum(len(p.chunks) for p in prepared)
    return prepared, {
        "extract_mb_s": total_bytes / 1024 / 1024 / extract_seconds,
        "pdf_pages_s": pdf_pages / pdf_seconds if pdf_seconds else float("nan"),
        "pdf_pages": pdf_pages,
        "chunk_chunks_s": total_chunks / chunk_seconds,
        "extract_s": extract_seconds,
        "chunk_s": chunk_seconds,
    }


async def raw_embed_rate(container: deps.Container, prepared: Sequence[Prepared]) -> float:
    """The embedder alone, on the same chunks and batch size the pipeline uses."""
    embedder = container.embedder
    batch_size = container.settings.embedding_batch_size
    total = 0
    started = time.perf_counter()
    for item in prepared:
        texts = [chunk.text for chunk in item.chunks]
        for start in range(0, len(texts), batch_size):
            await embedder.embed_documents(texts[start : start + batch_size])
        total += len(texts)
    return total / (time.perf_counter() - started)


async def store_rate(container: deps.Container, prepared: Sequence[Prepared]) -> float:
    """Vector-store writes alone (vectors made up front, in a scratch space)."""
    embedder = container.embedder
    batch = [chunk.text for chunk in prepared[0].chunks[:64]]
    vectors = await embedder.embed_documents(batch)
    store = container.vector_store
    rounds, written = 20, 0
    started = time.perf_counter()
    for round_ in range(rounds):
        records = [
            VectorRecord(chunk_id=f"{round_}-{i}", document_id=f"doc-{round_}", embedding=vector)
            for i, vector in enumerate(vectors)
        ]
        await store.add(space="bench-scratch-384", scope="character:bench", records=records)
        written += len(records)
    return written / (time.perf_counter() - started)


def fmt(value: float, unit: str) -> str:
    return f"{value:10.1f} {unit}"


async def run(opts: argparse.Namespace) -> int:
    files = corpus_files(opts.corpus, opts.max_mb)
    if not files:
        print(f"no corpus files under {opts.corpus}")
        return 2
    with tempfile.TemporaryDirectory(prefix="histora-bench-ingest-") as tmp:
        data_dir = Path(tmp)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=data_dir,
            database_url=f"sqlite:///{data_dir / 'bench.db'}",
            embedding_batch_size=opts.batch_size,
            log_level="WARNING",
            seed_on_start=False,
        )
        configure_logging(settings)
        upgrade_to_head(settings)
        container = deps.Container(settings)
        deps.use_container(container)
        try:
            return await measure(container, settings, files)
        finally:
            await container.aclose()


async def measure(container: deps.Container, settings: Settings, files: Sequence[Path]) -> int:
    prepared, stages = stage_extract_and_chunk(files, settings, container)
    total_chunks = sum(len(p.chunks) for p in prepared)
    total_mb = sum(len(p.data) for p in prepared) / 1024 / 1024
    print(
        f"corpus: {len(prepared)} files, {total_mb:.1f} MB, {total_chunks} chunks "
        f"(size {settings.chunk_size_chars}, overlap {settings.chunk_overlap_chars}), "
        f"embedder {container.embedder.name}, batch {settings.embedding_batch_size}"
    )
    await container.embedder.embed_documents(["warm up the model"])  # load outside timings

    raw_before = await raw_embed_rate(container, prepared)
    writes = await store_rate(container, prepared)
    seconds, pipeline_chunks = await ingest_all(container, prepared)
    raw_after = await raw_embed_rate(container, prepared)
    raw = statistics.mean([raw_before, raw_after])
    pipeline = pipeline_chunks / seconds
    ratio = pipeline / raw

    print()
    print("stage                         rate")
    print(
        f"extract (all files)     {fmt(stages['extract_mb_s'], 'MB/s')}   "
        f"({stages['extract_s']:.2f} s)"
    )
    print(
        f"extract (PDF pages)     {fmt(stages['pdf_pages_s'], 'pages/s')}   "
        f"({stages['pdf_pages']:.0f} pages)"
    )
    print(
        f"chunk                   {fmt(stages['chunk_chunks_s'], 'chunks/s')}   "
        f"({stages['chunk_s']:.2f} s)"
    )
    print(
        f"embed (raw, baseline)   {fmt(raw, 'chunks/s')}   "
        f"(before {raw_before:.1f}, after {raw_after:.1f})"
    )
    print(f"vector store writes     {fmt(writes, 'chunks/s')}")
    print(
        f"pipeline (end to end)   {fmt(pipeline, 'chunks/s')}   "
        f"({pipeline_chunks} chunks in {seconds:.1f} s)"
    )
    print()
    met = ratio >= TARGET_RATIO
    print(
        f"pipeline / raw embedder = {ratio:.2f}x   target >= {TARGET_RATIO}x   "
        f"{'MET' if met else 'NOT MET'}"
    )
    return 0


async def ingest_all(container: deps.Container, prepared: Sequence[Prepared]) -> tuple[float, int]:
    """Upload every file through the service, then time the ingestion drain."""
    async with container.db_session() as db:
        await seed_service.seed_catalogue(db)
        admin = await auth_service.ensure_admin(
            db,
            email="bench@histora.test",
            password="Tranquil-Harbour-2026",
            settings=container.settings,
        )
        for item in prepared:
            await documents_service.upload_to_character(
                db,
                actor=admin,
                character_id=item.character_id,
                upload=documents_service.Upload(item.path.name, item.data),
                files=container.file_store,
                limits=container.extraction_limits,
            )
    started = time.perf_counter()
    await process_pending(container.ingestion_context())
    seconds = time.perf_counter() - started
    async with container.db_session() as db:
        documents = (await db.exec(select(Document))).all()
    failed = [d.filename for d in documents if d.status != DocumentStatus.READY]
    if failed:
        raise SystemExit(f"ingestion failed for: {failed}")
    return seconds, sum(d.chunk_count for d in documents)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument(
        "--max-mb", type=float, default=None, help="use the smallest files up to N MB"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(run(parse())))
