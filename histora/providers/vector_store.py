"""The vector store behind a Protocol: Chroma in-process by default, or a Chroma server.

Vectors live in *spaces* (one per embedder and dimension, see
``embedders.vector_space``) and, within a space, in *scopes* ("character:<id>" or
"session:<uuid>"): a character's knowledge base or one chat session's uploads.

Chroma layout: one collection per (space, scope), queried one scope at a time and
merged by similarity. Measured by ``bench/retrieval.py`` at 50k chunks (MiniLM, 384
dimensions, in-process persistent client, k=30, a 34k-chunk knowledge base plus a
100-chunk session): one shared collection with a ``where`` scope filter took p50 103 ms /
p95 118 ms (SETUP-NOTES saw 35-50 ms for a single-scope filter); one collection per
scope took p50 2.9 ms / p95 3.4 ms for both scopes together. Separate collections also
make scope isolation structural: a session's vectors are never in an index that another
scope's query searches.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import numpy as np
from numpy.typing import NDArray

from histora.errors import ProviderError
from histora.providers.health import ComponentHealth

_DOCUMENT_KEY = "document_id"
_UNSAFE_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]+")


@dataclass(frozen=True)
class VectorRecord:
    chunk_id: str
    document_id: str
    embedding: NDArray[np.float32] | Sequence[float]


@dataclass(frozen=True)
class VectorHit:
    chunk_id: str
    document_id: str
    similarity: float  # cosine similarity, -1..1


class VectorStore(Protocol):
    @property
    def provider_name(self) -> str: ...

    async def check_health(self) -> ComponentHealth: ...

    async def add(self, *, space: str, scope: str, records: Sequence[VectorRecord]) -> None:
        """Insert or replace (by chunk id) the records of one scope."""
        ...

    async def query(
        self, *, space: str, scopes: Sequence[str], embedding: NDArray[np.float32], k: int
    ) -> list[VectorHit]:
        """The k most similar records across the given scopes, best first."""
        ...

    async def delete_document(self, *, space: str, scope: str, document_id: str) -> None: ...

    async def count(self, *, space: str, scope: str) -> int: ...


def collection_name(space: str, scope: str) -> str:
    """A Chroma-safe collection name (3-512 chars of [a-zA-Z0-9._-]) for a space and scope.

    Readable parts for operators, plus a digest of the exact pair so that two scopes
    that sanitise alike can never share a collection.
    """
    digest = hashlib.sha256(f"{space}\x00{scope}".encode()).hexdigest()[:16]
    readable = _UNSAFE_NAME_CHARS.sub("_", f"{space}__{scope}")[:200]
    return f"h_{readable}_{digest}"


def _top_hits(hits: list[VectorHit], k: int) -> list[VectorHit]:
    return sorted(hits, key=lambda hit: (-hit.similarity, hit.chunk_id))[:k]


class ChromaVectorStore:
    """Chroma through a persistent client (one writing process) or an HTTP client.

    Every Chroma call is blocking, so each public method runs in a worker thread.
    """

    def __init__(self, *, path: Path | None = None, url: str | None = None) -> None:
        if (path is None) == (url is None):
            raise ValueError("give exactly one of path or url")
        self._path = path
        self._url = url
        self._client: Any = None
        # Collections are never dropped, so a found handle stays valid; misses are not
        # remembered because another process (an ingest worker) may create them later.
        self._collections: dict[str, Any] = {}

    @property
    def provider_name(self) -> str:
        return "chroma-http" if self._url else "chroma-persistent"

    def _get_client(self) -> Any:
        if self._client is None:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            chroma_settings = ChromaSettings(anonymized_telemetry=False)
            if self._url:
                parsed = urlparse(self._url)
                self._client = chromadb.HttpClient(
                    host=parsed.hostname or "127.0.0.1",
                    port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                    ssl=parsed.scheme == "https",
                    settings=chroma_settings,
                )
            else:
                assert self._path is not None
                self._path.mkdir(parents=True, exist_ok=True)
                self._client = chromadb.PersistentClient(
                    path=str(self._path), settings=chroma_settings
                )
        return self._client

    async def check_health(self) -> ComponentHealth:
        try:
            await asyncio.wait_for(asyncio.to_thread(lambda: self._get_client().heartbeat()), 5)
        except Exception as exc:  # noqa: BLE001 - any failure means unavailable
            self._client = None
            self._collections.clear()
            return ComponentHealth(
                ok=False, detail=f"unavailable: {type(exc).__name__}", provider=self.provider_name
            )
        return ComponentHealth(ok=True, detail="reachable", provider=self.provider_name)

    async def add(self, *, space: str, scope: str, records: Sequence[VectorRecord]) -> None:
        if records:
            await self._call(self._add, space, scope, records)

    async def query(
        self, *, space: str, scopes: Sequence[str], embedding: NDArray[np.float32], k: int
    ) -> list[VectorHit]:
        if k < 1 or not scopes:
            return []
        vector = np.asarray(embedding, dtype=np.float32).tolist()
        hits: list[VectorHit] = await self._call(self._query, space, scopes, vector, k)
        return hits

    async def delete_document(self, *, space: str, scope: str, document_id: str) -> None:
        await self._call(self._delete_document, space, scope, document_id)

    async def count(self, *, space: str, scope: str) -> int:
        total: int = await self._call(self._count, space, scope)
        return total

    async def _call(self, function: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(function, *args)
        except ProviderError:
            raise
        except Exception as exc:  # chromadb raises many types; all mean "store failed"
            raise ProviderError(detail=f"Chroma call failed: {type(exc).__name__}: {exc}") from exc

    # The methods below run in a worker thread.

    def _collection(self, space: str, scope: str, *, create: bool) -> Any:
        name = collection_name(space, scope)
        collection = self._collections.get(name)
        if collection is not None:
            return collection
        client = self._get_client()
        if create:
            collection = client.get_or_create_collection(
                name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"space": space, "scope": scope},
            )
        else:
            from chromadb.errors import NotFoundError

            try:
                collection = client.get_collection(name, embedding_function=None)
            except NotFoundError:
                return None
        self._collections[name] = collection
        return collection

    def _add(self, space: str, scope: str, records: Sequence[VectorRecord]) -> None:
        collection = self._collection(space, scope, create=True)
        batch = int(self._get_client().get_max_batch_size())
        for start in range(0, len(records), batch):
            part = records[start : start + batch]
            collection.upsert(
                ids=[record.chunk_id for record in part],
                embeddings=np.asarray([record.embedding for record in part], dtype=np.float32),
                metadatas=[{_DOCUMENT_KEY: record.document_id} for record in part],
            )

    def _query(
        self, space: str, scopes: Sequence[str], vector: list[float], k: int
    ) -> list[VectorHit]:
        hits: list[VectorHit] = []
        for scope in dict.fromkeys(scopes):
            collection = self._collection(space, scope, create=False)
            if collection is None:
                continue
            result = collection.query(
                query_embeddings=[vector], n_results=k, include=["metadatas", "distances"]
            )
            for chunk_id, metadata, distance in zip(
                result["ids"][0], result["metadatas"][0], result["distances"][0], strict=True
            ):
                # Chroma's cosine distance is 1 - cosine similarity.
                hits.append(VectorHit(chunk_id, str(metadata[_DOCUMENT_KEY]), 1.0 - distance))
        return _top_hits(hits, k)

    def _delete_document(self, space: str, scope: str, document_id: str) -> None:
        collection = self._collection(space, scope, create=False)
        if collection is not None:
            collection.delete(where={_DOCUMENT_KEY: document_id})

    def _count(self, space: str, scope: str) -> int:
        collection = self._collection(space, scope, create=False)
        return 0 if collection is None else int(collection.count())
