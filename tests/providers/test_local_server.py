"""The supervisor of the embedded servers: restarts a dead one, backs off one that keeps dying."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from histora.machine_lock import try_acquire
from histora.providers.local_server import LocalServer


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _on_loopback(port: int, tmp_path: Path, name: str) -> dict[str, Any]:
    """Where a stand-in server listens, logs and locks."""
    return {
        "host": "127.0.0.1",
        "port": port,
        "health_url": f"http://127.0.0.1:{port}/health",
        "log_path": tmp_path / f"{name}.log",
        "lock_path": tmp_path / f"{name}.lock",
    }


class _CrashingServer(LocalServer):
    """A server whose process exits at once, every time."""

    event = "crashing_server"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(**_on_loopback(_closed_port(), tmp_path, "crashing"))
        self.spawned = 0

    def _command(self) -> list[str]:
        return [sys.executable, "-c", "raise SystemExit(3)"]

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.spawned += 1
        return super()._spawn()


async def _supervise_for(server: LocalServer, seconds: float, interval: float) -> None:
    supervisor = asyncio.create_task(server.supervise(interval=interval))
    await asyncio.sleep(seconds)
    supervisor.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await supervisor


async def test_a_server_that_keeps_dying_is_restarted_less_and_less_often(tmp_path: Path) -> None:
    server = _CrashingServer(tmp_path)
    await server.start(ready_timeout=5)
    assert server.spawned == 1 and server.pid is None

    assert server.may_come_back()  # nothing has been tried yet

    await _supervise_for(server, seconds=4, interval=0.05)
    # Each failed start takes about 0.25 s, so a fixed 0.05 s wait allows about 13
    # restarts in 4 s; doubling waits (0.05, 0.1, 0.2, 0.4, 0.8, 1.6) allow 5.
    assert 3 <= server.spawned - 1 <= 6, server.spawned
    # Its restarts fail: a chat send should not wait for it.
    assert not server.may_come_back()


class _FlakyServer(_CrashingServer):
    """Stays up, except that its second start fails; healthy while its process runs."""

    def _command(self) -> list[str]:
        if self.spawned == 2:
            return super()._command()
        return [sys.executable, "-c", "import time; time.sleep(60)"]

    async def is_healthy(self, wait_seconds: float = 1.0) -> bool:
        return self.pid is not None


async def test_a_server_back_after_a_failed_restart_may_come_back_again(
    tmp_path: Path,
) -> None:
    server = _FlakyServer(tmp_path)
    try:
        await server.start(ready_timeout=5)
        assert server._process is not None
        server._process.kill()  # a crash
        server._process.wait()
        # The first restart fails at once, the next one brings it back.
        await _supervise_for(server, seconds=1.5, interval=0.05)
        assert server.spawned == 3 and server.pid is not None
        assert server.may_come_back()
    finally:
        await server.stop()


class _OwnPortServer(_CrashingServer):
    """A crashing server whose port must be its own: a listener there stops a start."""

    event = "own_port_server"
    port_setting = "HISTORA_TEST_SERVER_PORT"


async def test_a_restart_refused_for_a_taken_port_is_tried_again(tmp_path: Path) -> None:
    server = _OwnPortServer(tmp_path)
    server.port_release_seconds = 0.05
    await server.start(ready_timeout=5)
    assert server.spawned == 1 and server.pid is None  # it died at once
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", server.port))
    squatter.listen()
    supervisor = asyncio.create_task(server.supervise(interval=0.05))
    try:
        # A restart waits for the port (0.5 s steps), then is refused: nothing spawned...
        await asyncio.sleep(1.5)
        assert server.spawned == 1
        squatter.close()
        # ...and once the port is free the supervisor still tries, and spawns it again.
        await asyncio.sleep(3)
        assert server.spawned > 1
    finally:
        squatter.close()
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor


# A stand-in server: answers 200 to every GET on the port it is given.
_HTTP_SERVER = """
import http.server, sys
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
"""


class _HttpServer(LocalServer):
    """A real listening server, healthy while it runs; several may share one lock."""

    event = "http_server"

    def __init__(self, tmp_path: Path, port: int, *, takeover_interval: float = 0.1) -> None:
        super().__init__(
            **_on_loopback(port, tmp_path, "http"),
            supervise_interval=0.1,
            takeover_interval=takeover_interval,
        )

    def _command(self) -> list[str]:
        return [sys.executable, "-c", _HTTP_SERVER, str(self.port)]


async def _eventually(condition: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_worker_without_the_lock_takes_over_when_the_owner_stops(
    tmp_path: Path,
) -> None:
    port = _closed_port()
    owner, waiting = _HttpServer(tmp_path, port), _HttpServer(tmp_path, port)
    owner_run = owner.run()
    await owner_run.__aenter__()
    try:
        async with waiting.run():
            assert owner.pid is not None and waiting.pid is None  # one server per machine
            # The owner goes (gunicorn replaced that worker); this one stays up.
            await owner_run.__aexit__(None, None, None)

            async def serving_here() -> bool:
                return waiting.pid is not None and await waiting.is_healthy()

            assert await _eventually(serving_here, seconds=10)
        # The new owner stops the server in its turn, and frees the lock.
        assert not await waiting.is_healthy()
        assert _lock_is_free(waiting.lock_path)
    finally:
        await owner.stop()
        await waiting.stop()


def _lock_is_free(path: Path) -> bool:
    lock = FileLock(str(path))
    if not try_acquire(lock):
        return False
    lock.release()
    return True


class _BusyServer(_HttpServer):
    """Reports a request in progress until ``idle`` is set."""

    drain_seconds = 5.0

    def __init__(self, tmp_path: Path, port: int) -> None:
        super().__init__(tmp_path, port)
        self.idle = asyncio.Event()

    async def _in_use(self) -> bool:
        return not self.idle.is_set()


async def test_stop_lets_requests_in_progress_finish(tmp_path: Path) -> None:
    server = _BusyServer(tmp_path, _closed_port())
    await server.start(ready_timeout=10)
    process = server._process
    assert process is not None
    stopping = asyncio.create_task(server.stop())
    try:
        await asyncio.sleep(0.6)
        assert not stopping.done() and process.poll() is None  # still answering someone
        server.idle.set()
        await asyncio.wait_for(stopping, timeout=3)
        assert process.poll() is not None
    finally:
        process.kill()


async def test_stop_waits_for_busy_requests_no_longer_than_its_drain_time(
    tmp_path: Path,
) -> None:
    server = _BusyServer(tmp_path, _closed_port())
    server.drain_seconds = 0.5  # type: ignore[misc]
    await server.start(ready_timeout=10)
    process = server._process
    assert process is not None
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(server.stop(), timeout=5)
    assert process.poll() is not None
    assert 0.4 <= asyncio.get_running_loop().time() - started < 3


async def test_a_server_found_answering_is_replaced_once_it_goes(tmp_path: Path) -> None:
    """The lock's new holder found the previous holder's server still answering (it
    was on its way out) and used it; when it goes, the holder runs its own."""
    port = _closed_port()
    previous, holder = _HttpServer(tmp_path / "old", port), _HttpServer(tmp_path, port)
    await previous.start(ready_timeout=10)
    try:
        async with holder.run():
            assert holder.pid is None and await holder.is_healthy()  # the previous one
            await previous.stop()

            async def serving_here() -> bool:
                return holder.pid is not None and await holder.is_healthy()

            assert await _eventually(serving_here, seconds=10)
            assert holder.may_come_back()
    finally:
        await previous.stop()
