"""The embedded llama-server, for real: installed by the setup step, run by CI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path

import pytest
import uvloop

from histora.providers.chat_models import LocalChatModel
from histora.providers.chat_types import ModelSpec, PromptMessage, StreamDelta, StreamEnd
from histora.providers.local_model import MODEL_ALIAS, LocalModelServer, local_chat_model
from histora.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path, local_model_port=_free_port(), **values
    )


def _chat_model(server: LocalModelServer) -> LocalChatModel:
    return local_chat_model(server, [ModelSpec(name=MODEL_ALIAS)], timeout_seconds=10)


async def test_missing_binary_is_reported_with_a_fix(tmp_path: Path) -> None:
    server = LocalModelServer(_settings(tmp_path, local_model_binary=tmp_path / "nope"))
    problem = server.installation_problem()
    assert problem is not None and "scripts/setup.sh" in problem
    health = await _chat_model(server).check_health()
    assert not health.ok and "not installed" in health.detail


async def test_installed_server_not_running_is_unavailable(tmp_path: Path) -> None:
    server = LocalModelServer(_settings(tmp_path))
    health = await _chat_model(server).check_health()
    assert not health.ok


@pytest.mark.local_model
async def test_server_starts_answers_health_and_stops(tmp_path: Path) -> None:
    server = LocalModelServer(_settings(tmp_path, local_model_threads=1))
    assert server.installation_problem() is None, "run ./scripts/setup.sh first"
    async with server.run():
        assert await server.is_healthy()
        health = await _chat_model(server).check_health()
        assert health.ok, health.detail
    assert not await server.is_healthy()


@pytest.mark.local_model
async def test_second_runner_defers_to_the_lock_holder(tmp_path: Path) -> None:
    settings = _settings(tmp_path, local_model_threads=1)
    first, second = LocalModelServer(settings), LocalModelServer(settings)
    async with first.run(), second.run():
        assert second._process is None
        assert await second.is_healthy()


@pytest.mark.local_model
def test_server_does_not_inherit_our_sockets(tmp_path: Path) -> None:
    """A leaked listening socket would keep the web port busy after the app exits.

    Runs under uvloop, the loop the web server uses, whose subprocess support leaks
    inheritable descriptors into children.
    """

    async def child_descriptors(inode: int) -> set[str]:
        server = LocalModelServer(_settings(tmp_path, local_model_threads=1))
        async with server.run():
            assert server._process is not None
            fd_dir = f"/proc/{server._process.pid}/fd"
            targets = set()
            for fd in os.listdir(fd_dir):
                # The server opens and closes files as it runs; an inherited socket
                # would stay open, so one that closed meanwhile is not it.
                with contextlib.suppress(FileNotFoundError):
                    targets.add(os.readlink(f"{fd_dir}/{fd}"))
            return targets

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.set_inheritable(True)
        inode = os.fstat(listener.fileno()).st_ino
        targets = uvloop.run(child_descriptors(inode))
    assert f"socket:[{inode}]" not in targets


@pytest.mark.local_model
async def test_stopping_lets_another_workers_reply_finish(tmp_path: Path) -> None:
    """The worker running the server stops (gunicorn replaced it) while another worker
    streams a reply from it: the reply completes before the server goes."""
    server = LocalModelServer(_settings(tmp_path, local_model_threads=1))
    spec = ModelSpec(name=MODEL_ALIAS, temperature=0.0, max_tokens=120)
    model = local_chat_model(server, [spec], timeout_seconds=60)
    running = server.run()
    await running.__aenter__()
    try:
        stream = model.stream(
            [PromptMessage(role="user", content="Tell me a long story about a ship.")]
        )
        first = await anext(stream)
        assert isinstance(first, StreamDelta)
        assert await server._in_use()
        stopping = asyncio.create_task(running.__aexit__(None, None, None))
        rest = [event async for event in stream]
        end = rest[-1]
        # Most of the reply came while the server was being stopped.
        assert isinstance(end, StreamEnd) and end.finish_reason in ("stop", "length")
        assert sum(isinstance(event, StreamDelta) for event in rest) >= 10
        await asyncio.wait_for(stopping, timeout=15)
    finally:
        await server.stop()
    assert not await server.is_healthy()
