"""The managed Chroma server, for real: `chroma run` on loopback, as several workers use it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import ValidationError

from histora.deps import Container
from histora.errors import ConfigurationError, ProviderError
from histora.providers.local_chroma import LocalChromaServer
from histora.providers.vector_store import ChromaVectorStore, VectorRecord
from histora.settings import Settings
from tests.multiworker import procfs
from tests.support import free_port

SPACE = "test-embedder-4"
SCOPE = "character:socrates"
REDIS = "redis://127.0.0.1:6379/0"


def _settings(tmp_path: Path, **values: Any) -> Settings:
    values.setdefault("chroma_local_port", free_port())
    if "redis_url" in values:  # the field is read by its variable names only
        values["HISTORA_REDIS_URL"] = values.pop("redis_url")
    return Settings(_env_file=None, data_dir=tmp_path, **values)


def _vector(*values: float) -> NDArray[np.float32]:
    vector = np.asarray(values, dtype=np.float32)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _records(prefix: str) -> list[VectorRecord]:
    return [
        VectorRecord(f"{prefix}-a", f"{prefix}-doc", _vector(1, 0, 0, 0)),
        VectorRecord(f"{prefix}-b", f"{prefix}-doc", _vector(0, 1, 0, 0)),
    ]


def _servers_on(port: int) -> list[int]:
    return procfs.processes_with_argument("run", "--port", str(port))


async def _until(condition: Callable[[], Awaitable[bool]], *, tries: int = 300) -> None:
    """Poll ``condition`` every 0.2 s, for a minute at the most."""
    for _ in range(tries):
        if await condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("timed out")


def test_one_worker_opens_the_path_in_process(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert not settings.manages_local_chroma and settings.resolved_chroma_url is None
    container = Container(settings)
    assert container.local_chroma_server is None
    assert container.vector_store.provider_name == "chroma-persistent"


def test_several_workers_use_the_managed_loopback_server(tmp_path: Path) -> None:
    settings = _settings(tmp_path, redis_url=REDIS, chroma_local_port=8799)
    assert settings.manages_local_chroma
    assert settings.resolved_chroma_url == "http://127.0.0.1:8799"
    container = Container(settings)
    server = container.local_chroma_server
    assert server is not None and server.url == settings.resolved_chroma_url
    assert server.path == tmp_path / "chroma"
    assert container.vector_store.provider_name == "chroma-http"


def test_an_explicit_chroma_url_wins(tmp_path: Path) -> None:
    settings = _settings(tmp_path, redis_url=REDIS, chroma_url="http://chroma:8000")
    assert not settings.manages_local_chroma
    assert settings.resolved_chroma_url == "http://chroma:8000"
    assert Container(settings).local_chroma_server is None


@pytest.mark.parametrize("port", [0, 65536])
def test_local_port_must_be_a_port(tmp_path: Path, port: int) -> None:
    with pytest.raises(ValidationError):
        _settings(tmp_path, chroma_local_port=port)


async def test_missing_binary_stops_startup_with_its_name(tmp_path: Path) -> None:
    missing = tmp_path / "bin" / "chroma"
    server = LocalChromaServer(_settings(tmp_path), binary=missing)
    with pytest.raises(ConfigurationError, match=str(missing)):
        async with server.run():
            pass
    assert server.pid is None


async def test_a_busy_port_names_the_setting(tmp_path: Path) -> None:
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        port = other_program.getsockname()[1]
        server = LocalChromaServer(_settings(tmp_path, chroma_local_port=port))
        server.port_release_seconds = 0.5
        with pytest.raises(ConfigurationError, match="HISTORA_CHROMA_LOCAL_PORT"):
            async with server.run():
                pass
    assert server.pid is None and _servers_on(port) == []


async def test_queries_before_the_server_answers_are_provider_errors(tmp_path: Path) -> None:
    store = ChromaVectorStore(url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ProviderError) as raised:
        await store.query(space=SPACE, scopes=[SCOPE], embedding=_vector(1, 0, 0, 0), k=1)
    assert raised.value.public_message.startswith("A service Histora depends on")
    assert not (await store.check_health()).ok


async def test_server_serves_restarts_when_killed_and_stops(tmp_path: Path) -> None:
    server = LocalChromaServer(_settings(tmp_path))
    server.supervise_interval = 0.2
    store = ChromaVectorStore(url=server.url)
    async with server.run():
        first_pid = server.pid
        assert first_pid is not None and await server.is_healthy()
        assert _servers_on(server.port) == [first_pid]
        await store.add(space=SPACE, scope=SCOPE, records=_records("one"))
        hits = await store.query(space=SPACE, scopes=[SCOPE], embedding=_vector(1, 0, 0, 0), k=1)
        assert [hit.chunk_id for hit in hits] == ["one-a"]

        os.kill(first_pid, signal.SIGKILL)

        async def restarted() -> bool:
            return server.pid not in (None, first_pid) and await server.is_healthy()

        await _until(restarted)
        assert _servers_on(server.port) == [server.pid]
        # The same client reconnects, and the vectors persisted on the path.
        assert (await store.check_health()).ok
        hits = await store.query(space=SPACE, scopes=[SCOPE], embedding=_vector(1, 0, 0, 0), k=2)
        assert [hit.chunk_id for hit in hits] == ["one-a", "one-b"]
        await store.add(space=SPACE, scope=SCOPE, records=_records("two"))
        assert await store.count(space=SPACE, scope=SCOPE) == 4
        last_pid = server.pid
    assert last_pid is not None and not procfs.is_running(last_pid)
    assert server.pid is None and _servers_on(server.port) == []
    assert not await server.is_healthy()
    assert (tmp_path / "chroma" / "chroma.sqlite3").is_file()


async def test_second_runner_defers_to_the_lock_holder(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first, second = LocalChromaServer(settings), LocalChromaServer(settings)
    async with first.run(), second.run():
        assert first.pid is not None and second.pid is None
        assert await second.is_healthy()
        assert _servers_on(settings.chroma_local_port) == [first.pid]
        store = ChromaVectorStore(url=second.url)
        await store.add(space=SPACE, scope=SCOPE, records=_records("shared"))
        assert await store.count(space=SPACE, scope=SCOPE) == 2
    assert _servers_on(settings.chroma_local_port) == []


def test_the_server_supervisor_is_abstract_without_a_command(tmp_path: Path) -> None:
    from histora.providers.local_server import LocalServer

    with pytest.raises(TypeError, match="_command"):
        LocalServer(  # type: ignore[abstract]
            host="127.0.0.1",
            port=1,
            health_url="http://127.0.0.1:1/",
            log_path=tmp_path / "log",
            lock_path=tmp_path / "lock",
        )
