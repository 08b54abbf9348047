"""The VectorStore contract, run against the fake, in-process Chroma and a real Chroma server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from histora.errors import ProviderError
from histora.providers.fakes import FakeVectorStore
from histora.providers.vector_store import (
    ChromaVectorStore,
    VectorRecord,
    VectorStore,
    collection_name,
)

SPACE = "test-embedder-8"
KB = "character:marcus-aurelius"
SESSION = "session:7f9c4a52-0b7e-4a53-9d55-5d2a5d0f8e11"
OTHER_SESSION = "session:0d8e2c1a-3b7f-4c9d-8e11-2f6a7b8c9d01"


def unit(*values: float) -> NDArray[np.float32]:
    vector = np.zeros(8, dtype=np.float32)
    vector[: len(values)] = values
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def axis(i: int) -> NDArray[np.float32]:
    vector = np.zeros(8, dtype=np.float32)
    vector[i] = 1.0
    return vector


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `chroma run` on loopback for this test run; stopped afterwards."""
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    chroma = Path(sys.executable).parent / "chroma"
    log = (data / "server.log").open("wb")
    process = subprocess.Popen(
        [str(chroma), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(data)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"chroma server did not start: {(data / 'server.log').read_text()}"
                )
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(params=["fake", "chroma-persistent", "chroma-http"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    if request.param == "fake":
        yield FakeVectorStore()
    elif request.param == "chroma-persistent":
        yield ChromaVectorStore(path=tmp_path / "chroma")
    else:
        url = request.getfixturevalue("chroma_server_url")
        # Each test gets its own space, so tests sharing the server never see each other.
        store = ChromaVectorStore(url=url)
        yield store


@pytest.fixture
def space() -> str:
    return f"{SPACE}-{uuid.uuid4().hex[:8]}"


async def test_add_then_count_and_upsert_is_idempotent(store: VectorStore, space: str) -> None:
    records = [VectorRecord(f"c{i}", "doc-a", axis(i)) for i in range(3)]

    await store.add(space=space, scope=KB, records=records)
    await store.add(space=space, scope=KB, records=records)

    assert await store.count(space=space, scope=KB) == 3
    assert await store.count(space=space, scope=SESSION) == 0


async def test_upsert_replaces_the_vector(store: VectorStore, space: str) -> None:
    await store.add(space=space, scope=KB, records=[VectorRecord("c0", "doc-a", axis(0))])

    await store.add(space=space, scope=KB, records=[VectorRecord("c0", "doc-a", axis(1))])

    [hit] = await store.query(space=space, scopes=[KB], embedding=axis(1), k=5)
    assert hit.chunk_id == "c0" and hit.similarity == pytest.approx(1.0, abs=1e-4)


async def test_query_ranks_by_cosine_similarity(store: VectorStore, space: str) -> None:
    await store.add(
        space=space,
        scope=KB,
        records=[
            VectorRecord("far", "doc-a", unit(0, 1)),
            VectorRecord("near", "doc-a", unit(1, 0.2)),
            VectorRecord("exact", "doc-b", unit(1)),
        ],
    )

    hits = await store.query(space=space, scopes=[KB], embedding=unit(1), k=2)

    assert [hit.chunk_id for hit in hits] == ["exact", "near"]
    assert hits[0].document_id == "doc-b"
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert hits[1].similarity == pytest.approx(float(np.dot(unit(1, 0.2), unit(1))), abs=1e-4)


async def test_query_merges_two_scopes_best_first(store: VectorStore, space: str) -> None:
    await store.add(
        space=space,
        scope=KB,
        records=[
            VectorRecord("kb-1", "kb-doc", unit(1, 0.5)),
            VectorRecord("kb-2", "kb-doc", unit(0, 1)),
        ],
    )
    await store.add(
        space=space, scope=SESSION, records=[VectorRecord("s-1", "s-doc", unit(1, 0.1))]
    )

    hits = await store.query(space=space, scopes=[KB, SESSION], embedding=unit(1), k=2)

    assert [hit.chunk_id for hit in hits] == ["s-1", "kb-1"]
    assert hits[0].similarity >= hits[1].similarity


async def test_a_session_scope_never_leaks_into_another_scope(
    store: VectorStore, space: str
) -> None:
    await store.add(space=space, scope=SESSION, records=[VectorRecord("secret", "s-doc", unit(1))])
    await store.add(space=space, scope=KB, records=[VectorRecord("public", "kb-doc", unit(0, 1))])

    for scopes in ([KB], [KB, OTHER_SESSION], [OTHER_SESSION]):
        hits = await store.query(space=space, scopes=scopes, embedding=unit(1), k=10)
        assert "secret" not in {hit.chunk_id for hit in hits}


async def test_spaces_never_mix(store: VectorStore, space: str) -> None:
    await store.add(space=space, scope=KB, records=[VectorRecord("a", "doc", unit(1))])
    other_space = f"{space}-other-16"
    await store.add(
        space=other_space, scope=KB, records=[VectorRecord("b", "doc", np.ones(16, np.float32))]
    )

    hits = await store.query(space=space, scopes=[KB], embedding=unit(1), k=10)

    assert [hit.chunk_id for hit in hits] == ["a"]
    assert await store.count(space=other_space, scope=KB) == 1


async def test_delete_document_removes_only_its_vectors(store: VectorStore, space: str) -> None:
    await store.add(
        space=space,
        scope=KB,
        records=[
            VectorRecord("a1", "doc-a", axis(0)),
            VectorRecord("a2", "doc-a", axis(1)),
            VectorRecord("b1", "doc-b", axis(2)),
        ],
    )

    await store.delete_document(space=space, scope=KB, document_id="doc-a")

    assert await store.count(space=space, scope=KB) == 1
    hits = await store.query(space=space, scopes=[KB], embedding=axis(0), k=10)
    assert [hit.chunk_id for hit in hits] == ["b1"]


async def test_unknown_scopes_and_deletes_are_harmless(store: VectorStore, space: str) -> None:
    assert await store.query(space=space, scopes=[OTHER_SESSION], embedding=axis(0), k=3) == []
    await store.delete_document(space=space, scope=OTHER_SESSION, document_id="nothing")
    assert await store.count(space=space, scope=OTHER_SESSION) == 0


async def test_a_wrong_dimension_is_a_provider_error(store: VectorStore, space: str) -> None:
    await store.add(space=space, scope=KB, records=[VectorRecord("a", "doc", axis(0))])

    with pytest.raises(ProviderError):
        await store.add(
            space=space, scope=KB, records=[VectorRecord("b", "doc", np.ones(3, np.float32))]
        )


async def test_adds_larger_than_one_batch(store: VectorStore, space: str) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(700, 8)).astype(np.float32)
    records = [VectorRecord(f"c{i}", f"d{i % 7}", vectors[i]) for i in range(700)]

    await store.add(space=space, scope=KB, records=records)

    assert await store.count(space=space, scope=KB) == 700
    [hit] = await store.query(space=space, scopes=[KB], embedding=vectors[123], k=1)
    assert hit.chunk_id == "c123"


def test_collection_names_are_chroma_safe_and_distinct() -> None:
    names = {
        collection_name(SPACE, KB),
        collection_name(SPACE, SESSION),
        collection_name(SPACE, "character:marcus aurelius"),
        collection_name(SPACE, "character:marcus_aurelius"),
        collection_name("other-space", KB),
    }
    assert len(names) == 5
    for name in names:
        assert 3 <= len(name) <= 512
        assert name[0].isalnum() and name[-1].isalnum()
        assert all(ch.isalnum() or ch in "._-" for ch in name)


async def test_persistent_chroma_is_healthy(tmp_path: Path) -> None:
    store = ChromaVectorStore(path=tmp_path / "chroma")
    health = await store.check_health()
    assert health.ok, health.detail
    assert health.provider == "chroma-persistent"


async def test_chroma_server_is_healthy(chroma_server_url: str) -> None:
    health = await ChromaVectorStore(url=chroma_server_url).check_health()
    assert health.ok, health.detail
    assert health.provider == "chroma-http"


async def test_unreachable_chroma_server_is_unavailable() -> None:
    store = ChromaVectorStore(url="http://127.0.0.1:9")
    health = await store.check_health()
    assert not health.ok
    assert health.provider == "chroma-http"


async def test_unreachable_chroma_server_query_is_a_provider_error() -> None:
    store = ChromaVectorStore(url="http://127.0.0.1:9")
    with pytest.raises(ProviderError):
        await store.query(space=SPACE, scopes=[KB], embedding=axis(0), k=1)


async def test_fake_store_down_raises_provider_error() -> None:
    store = FakeVectorStore(healthy=False)
    assert not (await store.check_health()).ok
    with pytest.raises(ProviderError):
        await store.count(space=SPACE, scope=KB)
