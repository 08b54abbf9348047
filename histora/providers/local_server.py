"""A server the app runs itself on loopback: one per machine, supervised by one worker.

The embedded model server and the managed Chroma server share this: whichever worker
takes the file lock spawns the process, checks its health, restarts it if it dies and
stops it on shutdown; the other workers connect to it, and keep asking for the lock, so
that when the owner goes (restarted by gunicorn, or crashed) another worker runs the
server. The owner lets requests from other workers finish before it stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import subprocess
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import httpx
import structlog
from filelock import FileLock

from histora.errors import ConfigurationError
from histora.machine_lock import TAKEOVER_INTERVAL_SECONDS, acquire_when_free, try_acquire
from histora.supervisor import die_with_parent

log = structlog.get_logger(__name__)

# A server that keeps dying right after a restart is retried at doubling intervals.
MAX_RESTART_BACKOFF_SECONDS = 60.0


def port_is_listening(host: str, port: int) -> bool:
    """Whether some process listens on host:port (lingering closed connections do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


class LocalServer(ABC):
    """Owns one child server process: start, health-check, restart, stop.

    Subclasses give the command, the health URL and what is missing from the install.
    """

    # Prefix of the log events, e.g. "local_model.ready".
    event: ClassVar[str]
    # A server the app cannot work without: a missing install stops the app at startup.
    required: ClassVar[bool] = False
    # Set for a server that must be this app's own (it holds data): a listener already on
    # its port is an error naming this setting, where a shareable server would be reused.
    port_setting: ClassVar[str | None] = None
    # How long stop() lets a server still answering other workers finish (see _in_use).
    drain_seconds: ClassVar[float] = 0.0

    def __init__(
        self,
        *,
        host: str,
        port: int,
        health_url: str,
        log_path: Path,
        lock_path: Path,
        # A check is one waitpid, so it is cheap to look often: a server that died is
        # restarted about a second later, and a user's retry soon finds it back.
        supervise_interval: float = 1.0,
        # How often a worker without the lock asks for it again.
        takeover_interval: float = TAKEOVER_INTERVAL_SECONDS,
    ) -> None:
        self.host = host
        self.port = port
        self.health_url = health_url
        self.log_path = log_path
        self.lock_path = lock_path
        self.supervise_interval = supervise_interval
        self.takeover_interval = takeover_interval
        # How long a previous server (a restarted worker's) may take to free the port.
        self.port_release_seconds = 10.0
        self._process: subprocess.Popen[bytes] | None = None
        # The supervisor and a caller may both try to restart a dead server.
        self._start_lock = asyncio.Lock()
        # The last restart did not bring the server back: the next try is a while off.
        self._restart_failed = False

    def installation_problem(self) -> str | None:
        """Why the server cannot run here, or None when it is installed."""
        return None

    @abstractmethod
    def _command(self) -> list[str]:
        """The command line that starts this server (each kind of server has its own)."""

    def may_come_back(self) -> bool:
        """Whether a server that does not answer is likely back within seconds: true
        unless this process supervises it and its last restart failed (a server
        supervised by another worker is assumed to be on its way back)."""
        return not self._restart_failed

    @property
    def pid(self) -> int | None:
        """The server process this object started and still runs, if any."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    async def is_healthy(self, wait_seconds: float = 1.0) -> bool:
        try:
            async with httpx.AsyncClient(timeout=wait_seconds) as client:
                response = await client.get(self.health_url)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def start(self, ready_timeout: float = 60.0) -> None:
        async with self._start_lock:
            await self._start(ready_timeout)

    async def _start(self, ready_timeout: float) -> None:
        if self.pid is not None:
            return
        if self.port_setting is None:
            if await self.is_healthy():
                return
        elif not await self._port_released():
            raise ConfigurationError(
                f"Port {self.port} on {self.host} is taken by another program, so the "
                f"{self.event.replace('_', ' ')} server cannot start: set {self.port_setting} "
                "to a free port."
            )
        problem = self.installation_problem()
        if problem:
            log.warning(f"{self.event}.unavailable", reason=problem)
            return
        process = self._spawn()
        started = asyncio.get_running_loop().time()
        while (waited := asyncio.get_running_loop().time() - started) < ready_timeout:
            if process.poll() is not None:
                log.error(f"{self.event}.exited", code=process.returncode, log=str(self.log_path))
                return
            if await self.is_healthy():
                log.info(
                    f"{self.event}.ready",
                    url=self.health_url,
                    pid=process.pid,
                    seconds=round(waited, 2),
                )
                return
            await asyncio.sleep(0.2)
        log.error(f"{self.event}.not_ready", timeout=ready_timeout, log=str(self.log_path))

    async def _port_released(self) -> bool:
        """Wait a little for a listener on our port to go (a previous server stopping)."""
        deadline = asyncio.get_running_loop().time() + self.port_release_seconds
        while port_is_listening(self.host, self.port):
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.5)
        return True

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            # Popen on the loop's own thread, not asyncio's subprocess API: uvloop leaks
            # the web server's listening sockets into the child, and the parent-death
            # signal is tied to the thread that forked. The command comes from settings.
            self._process = subprocess.Popen(  # noqa: S603
                self._command(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                close_fds=True,
                # In the child before exec: no orphaned server if the app is killed.
                preexec_fn=die_with_parent,
            )
        return self._process

    async def _in_use(self) -> bool:
        """Whether the server is still answering a request (another worker's, say)."""
        return False

    async def _drain(self, process: subprocess.Popen[bytes]) -> None:
        """Wait, up to drain_seconds, for the server to finish what it is answering."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_seconds
        while process.poll() is None and await self._in_use():
            if loop.time() >= deadline:
                log.warning(f"{self.event}.stopped_busy", waited=self.drain_seconds)
                return
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if self.drain_seconds > 0:
            await self._drain(process)
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
        log.info(f"{self.event}.stopped")

    async def supervise(self, interval: float | None = None, *, failing: bool = False) -> None:
        """Restart the server if it dies; one that keeps dying, or cannot be started
        again (its port taken, say), is retried less and less often. ``failing``: the
        server is not running yet although it should be; start it at the first look."""
        every = self.supervise_interval if interval is None else interval
        wait = every
        while True:
            await asyncio.sleep(wait)
            process = self._process
            if process is not None and process.poll() is None:
                wait, failing, self._restart_failed = every, False, False
                continue
            # Not started here: not installed, or a server already answering was used.
            # Once that one goes (a previous worker's, stopping), run ours.
            if (
                process is None
                and not failing
                and (self.installation_problem() or await self.is_healthy())
            ):
                continue
            if process is not None:
                log.warning(f"{self.event}.died", code=process.returncode)
                self._process = None
            failing = True
            try:
                await self.start()
            except ConfigurationError as exc:
                log.error(f"{self.event}.restart_failed", reason=str(exc))
            # Started, or a server already answering was found: either will do.
            self._restart_failed = self.pid is None and not await self.is_healthy()
            if self._restart_failed:  # it did not come back: back off, up to a minute
                wait = min(wait * 2, MAX_RESTART_BACKOFF_SECONDS)

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Run for the app's lifetime, on at most one worker per machine."""
        problem = self.installation_problem()
        if problem and self.required:
            raise ConfigurationError(problem)
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path))
        supervisor: asyncio.Task[None] | None = None
        try:
            if try_acquire(lock):
                await self.start()
                work = self.supervise()
            else:
                log.info(f"{self.event}.managed_elsewhere")
                work = self._take_over_when_free(lock)
            supervisor = asyncio.create_task(work, name=f"{self.event}-supervisor")
            yield
        finally:
            if supervisor is not None:
                supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervisor
            if lock.is_locked:
                await self.stop()
                lock.release()

    async def _take_over_when_free(self, lock: FileLock) -> None:
        """Once the lock is free (its holder stopped the server, or died), run and
        supervise the server here."""
        await acquire_when_free(lock, self.takeover_interval)
        log.info(f"{self.event}.taking_over")
        try:
            await self.start()
        except ConfigurationError as exc:  # a dying server's port not free yet, say
            log.error(f"{self.event}.restart_failed", reason=str(exc))
        await self.supervise()
