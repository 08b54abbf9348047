"""The supervisor of the embedded servers: restarts a dead one, backs off one that keeps dying."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from pathlib import Path

from histora.providers.local_server import LocalServer


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _CrashingServer(LocalServer):
    """A server whose process exits at once, every time."""

    event = "crashing_server"

    def __init__(self, tmp_path: Path) -> None:
        port = _closed_port()
        super().__init__(
            host="127.0.0.1",
            port=port,
            health_url=f"http://127.0.0.1:{port}/health",
            log_path=tmp_path / "crashing.log",
            lock_path=tmp_path / "crashing.lock",
        )
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
