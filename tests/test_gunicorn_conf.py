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

from histora.supervisor import MAX_DEFAULT_WORKERS, child_pids, usable_cpus, web_workers
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


def _gunicorn(tmp_path: Path, port: int, *options: str) -> list[str]:
    (tmp_path / "tiny_app.py").write_text(APP)
    return [
        sys.executable, "-m", "gunicorn",
        "--config", str(ROOT / "gunicorn.conf.py"),
        "--worker-class", "uvicorn.workers.UvicornWorker",
        "--bind", f"127.0.0.1:{port}",
        "--chdir", str(tmp_path),
        *options,
        "tiny_app:app",
    ]  # fmt: skip


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HISTORA_")}
    env.pop("GUNICORN_CMD_ARGS", None)
    env.pop("WEB_CONCURRENCY", None)
    return env | {"PYTHONPATH": str(ROOT), "HISTORA_DATA_DIR": str(tmp_path / "data")} | extra


@contextlib.contextmanager
def launched_gunicorn(
    tmp_path: Path, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """A shell standing in for `reflex run`, which runs gunicorn as its child and waits.

    Yields the shell, gunicorn's master pid and the lifespan log.
    """
    lifespan_log = tmp_path / "lifespan.log"
    port = free_port()
    gunicorn = _gunicorn(tmp_path, port)
    env = _env(tmp_path, LIFESPAN_LOG=str(lifespan_log), **env)
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


def _worker_count(master: int, expected: int) -> int:
    # gunicorn forks its workers one by one after it starts serving.
    deadline = time.monotonic() + STOP_SECONDS
    while len(child_pids(master)) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(child_pids(master))


def test_without_redis_one_worker_serves_whatever_web_concurrency_says(tmp_path: Path) -> None:
    with launched_gunicorn(tmp_path, WEB_CONCURRENCY="3") as (_launcher, master, _log):
        time.sleep(1)  # time enough for more workers to start, if any were wrongly asked for
        assert _worker_count(master, 1) == 1


def test_with_redis_web_concurrency_chooses_the_workers(tmp_path: Path) -> None:
    # The setting alone decides; nothing here connects to Redis.
    redis = {"HISTORA_REDIS_URL": "redis://127.0.0.1:6379/0", "WEB_CONCURRENCY": "3"}
    with launched_gunicorn(tmp_path, **redis) as (_launcher, master, _log):
        assert _worker_count(master, 3) == 3


def _assert_refused(command: list[str], env: dict[str, str], cwd: Path, value: str) -> None:
    result = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    message = f"WEB_CONCURRENCY must be a whole number of workers, 1 or more; not {value!r}."
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_gunicorn_refuses_no_workers_with_a_clear_message(tmp_path: Path) -> None:
    command = _gunicorn(tmp_path, free_port(), "--check-config")
    _assert_refused(command, _env(tmp_path, WEB_CONCURRENCY="0"), tmp_path, "0")


@pytest.mark.parametrize("value", ["many", "0", "-2", "1.5"])
def test_reflex_refuses_a_bad_web_concurrency_before_it_starts(tmp_path: Path, value: str) -> None:
    # gunicorn reads WEB_CONCURRENCY on import, with a traceback for anything but a
    # number; `reflex run` reads rxconfig.py first.
    command = [sys.executable, "-c", "import rxconfig"]
    _assert_refused(command, _env(tmp_path, WEB_CONCURRENCY=value), ROOT, value)


@pytest.mark.parametrize(
    ("shared_state", "environ", "cpus", "expected"),
    [
        (False, {}, 16, 1),
        (False, {"WEB_CONCURRENCY": "4"}, 16, 1),
        (True, {}, 1, 3),
        (True, {}, 2, 5),
        (True, {}, 64, MAX_DEFAULT_WORKERS),
        (True, {"WEB_CONCURRENCY": " 12 "}, 2, 12),
    ],
)
def test_the_number_of_workers(
    shared_state: bool, environ: dict[str, str], cpus: int, expected: int
) -> None:
    assert web_workers(shared_state=shared_state, environ=environ, cpus=cpus) == expected


def _cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({}, None),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "100000 100000\n"}, 1),
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: rounded up
        ({"cpu.max": "10000 100000\n"}, 1),  # a tenth of a CPU still gets a worker's worth
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2),
        ({"cpu.max": "garbage\n"}, None),
    ],
)
def test_usable_cpus_follow_a_containers_cpu_limit(
    tmp_path: Path, files: dict[str, str], limit: int | None
) -> None:
    own = len(os.sched_getaffinity(0))
    expected = own if limit is None else min(own, limit)
    assert usable_cpus(_cgroup(tmp_path, files)) == expected


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
