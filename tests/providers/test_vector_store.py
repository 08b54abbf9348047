from __future__ import annotations

from pathlib import Path

from histora.providers.vector_store import ChromaVectorStore


async def test_persistent_chroma_is_healthy(tmp_path: Path) -> None:
    store = ChromaVectorStore(path=tmp_path / "chroma")
    health = await store.check_health()
    assert health.ok, health.detail
    assert health.provider == "chroma-persistent"


async def test_unreachable_chroma_server_is_unavailable() -> None:
    store = ChromaVectorStore(url="http://127.0.0.1:9")
    health = await store.check_health()
    assert not health.ok
    assert health.provider == "chroma-http"
