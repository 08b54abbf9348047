"""gunicorn.conf.py: no server outlives the process that started it.

Real gunicorn with uvicorn workers and the repository's config, serving a small ASGI app
that records its lifespan shutdown: when `reflex run` (here a shell) or gunicorn's master
is killed outright, what it started stops by itself, and gracefully.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from histora.supervisor import child_pids
from tests.support import free_port

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="parent-death signals are Linux's")

ROOT = Path(__file__).resolve().parent.parent
STOP_SECONDS = 15.0

# Answers every request; on its lifespan shutdown, appends "stopped <pid>" to the file named
# by LIFESPAN_LOG, which only a graceful stop gets to do.
APP = textwrap.dedent(
    """
    import os

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    with open(os.environ["LIFESPAN_LOG"], "a") as log:
                        log.write(f"stopped {os.getpid()}\\n")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    """
)


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_gone(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + STOP_SECONDS
    while (alive := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def _wait_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the launcher ended before gunicorn served"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"gunicorn did not serve {url} in time")


@contextlib.contextmanager
def launched_gunicorn(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """A shell standing in for `reflex run`, which runs gunicorn as its child and waits.

    Yields the shell, gunicorn's master pid and the lifespan log.
    """
    (tmp_path / "tiny_app.py").write_text(APP)
    lifespan_log = tmp_path / "lifespan.log"
    port = free_port()
    gunicorn = [
        sys.executable, "-m", "gunicorn",
        "--config", str(ROOT / "gunicorn.conf.py"),
        "--worker-class", "uvicorn.workers.UvicornWorker",
        "--bind", f"127.0.0.1:{port}",
        "--chdir", str(tmp_path),
        "tiny_app:app",
    ]  # fmt: skip
    env = {key: value for key, value in os.environ.items() if not key.startswith("HISTORA_")}
    env |= {
        "LIFESPAN_LOG": str(lifespan_log),
        "PYTHONPATH": str(ROOT),
        "HISTORA_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("GUNICORN_CMD_ARGS", None)
    env.pop("WEB_CONCURRENCY", None)
    # "exec" is avoided on purpose: the shell must stay gunicorn's parent.
    launcher = subprocess.Popen(
        ["bash", "-c", '"$@"; echo "gunicorn exited $?"', "launcher", *gunicorn],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_serving(f"http://127.0.0.1:{port}/", launcher)
        (master,) = child_pids(launcher.pid)
        yield launcher, master, lifespan_log
    finally:
        # The whole process group: an orphan that a failing test leaves has a new parent.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(timeout=10)


def test_without_redis_one_worker_serves(tmp_path: Path) -> None:
    with launched_gunicorn(tmp_path) as (_launcher, master, _log):
        assert len(child_pids(master)) == 1


def test_a_worker_whose_master_is_killed_stops_gracefully(tmp_path: Path) -> None:
    with launched_gunicorn(tmp_path) as (_launcher, master, lifespan_log):
        (worker,) = child_pids(master)
        os.kill(master, signal.SIGKILL)
        assert _wait_gone([worker]) == [], "the worker served on after its master was killed"
        assert lifespan_log.read_text().split() == ["stopped", str(worker)]


def test_gunicorn_stops_gracefully_when_its_launcher_is_killed(tmp_path: Path) -> None:
    with launched_gunicorn(tmp_path) as (launcher, master, lifespan_log):
        (worker,) = child_pids(master)
        os.kill(launcher.pid, signal.SIGKILL)
        assert _wait_gone([master, worker]) == [], "gunicorn served on as an orphan"
        assert lifespan_log.read_text().split() == ["stopped", str(worker)]
