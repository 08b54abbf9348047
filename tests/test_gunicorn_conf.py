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

from histora.procfs import child_pids, is_running
from histora.worker_sizing import MAX_DEFAULT_WORKERS, usable_cpus, web_workers
from tests.support import free_port

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="parent-death signals are Linux's")

ROOT = Path(__file__).resolve().parent.parent
STOP_SECONDS = 15.0

# Answers every request (once loaded); on its lifespan shutdown, appends "stopped <pid>" to
# the file named by LIFESPAN_LOG, which only a graceful stop gets to do.
APP = textwrap.dedent(
    """
    import asyncio, os, sys, time

    time.sleep(float(os.environ.get("IMPORT_SECONDS", "0")))  # an app slow to load

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
        # What serves it: the event loop, and which of uvicorn's HTTP parsers is loaded.
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        parsers = [name for name in ("h11", "httptools")
                   if f"uvicorn.protocols.http.{name}_impl" in sys.modules]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": " ".join([loop, *parsers]).encode()})
    """
)


def _wait_gone(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + STOP_SECONDS
    while (alive := [pid for pid in pids if is_running(pid)]) and time.monotonic() < deadline:
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
    """gunicorn as `reflex run --env prod` starts it (--preload, the h11 uvicorn worker)."""
    (tmp_path / "tiny_app.py").write_text(APP)
    return [
        sys.executable, "-m", "gunicorn",
        "--config", str(ROOT / "gunicorn.conf.py"),
        "--preload",
        "--worker-class", "uvicorn.workers.UvicornH11Worker",
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


def _one_cpu() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


@contextlib.contextmanager
def _launcher(
    tmp_path: Path, port: int, *, one_cpu: bool = False, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A shell standing in for `reflex run`, which runs gunicorn as its child and waits."""
    # "exec" is avoided on purpose: the shell must stay gunicorn's parent.
    launcher = subprocess.Popen(
        ["bash", "-c", '"$@"; echo "gunicorn exited $?"', "launcher", *_gunicorn(tmp_path, port)],
        env=_env(tmp_path, LIFESPAN_LOG=str(tmp_path / "lifespan.log"), **env),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_one_cpu if one_cpu else None,
    )
    try:
        yield launcher
    finally:
        # The whole process group: an orphan that a failing test leaves has a new parent.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(timeout=10)


@contextlib.contextmanager
def launched_gunicorn(
    tmp_path: Path, *, one_cpu: bool = False, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """gunicorn serving under its launcher: yields the launcher, gunicorn's master pid
    and the lifespan log."""
    port = free_port()
    with _launcher(tmp_path, port, one_cpu=one_cpu, **env) as launcher:
        _wait_serving(f"http://127.0.0.1:{port}/", launcher)
        (master,) = child_pids(launcher.pid)
        yield launcher, master, tmp_path / "lifespan.log"


def _settled_worker_count(master: int, expected: int) -> int:
    # gunicorn forks its workers one by one once it serves: wait for them, then a little
    # longer, so that too many shows as well as too few.
    deadline = time.monotonic() + STOP_SECONDS
    while len(child_pids(master)) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    return len(child_pids(master))


def test_without_redis_one_worker_serves_whatever_web_concurrency_says(tmp_path: Path) -> None:
    with launched_gunicorn(tmp_path, WEB_CONCURRENCY="3") as (_launcher, master, _log):
        assert _settled_worker_count(master, 1) == 1


# The setting alone decides; nothing here connects to Redis.
REDIS = {"HISTORA_REDIS_URL": "redis://127.0.0.1:6379/0"}


def test_with_redis_web_concurrency_chooses_the_workers(tmp_path: Path) -> None:
    with launched_gunicorn(tmp_path, **REDIS, WEB_CONCURRENCY="2") as (_launcher, master, _log):
        assert _settled_worker_count(master, 2) == 2


def test_with_redis_the_usable_cpus_choose_the_workers(tmp_path: Path) -> None:
    # Held to one CPU: 2 x 1 + 1 (gunicorn's own default would be 1).
    with launched_gunicorn(tmp_path, one_cpu=True, **REDIS) as (_launcher, master, _log):
        assert _settled_worker_count(master, 3) == 3


def test_gunicorn_refuses_no_workers_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        _gunicorn(tmp_path, free_port(), "--check-config"),
        env=_env(tmp_path, WEB_CONCURRENCY="0"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "WEB_CONCURRENCY must be a whole number of workers, 1 or more; not '0'." in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["many", "0", "-2", "1.5"])
def test_reflex_refuses_a_bad_web_concurrency_before_it_starts(tmp_path: Path, value: str) -> None:
    # gunicorn reads WEB_CONCURRENCY on import, with a traceback for anything but a
    # number; `reflex run --env prod` reads rxconfig.py before it builds anything.
    port = str(free_port())
    command = [sys.executable, "-m", "reflex", "run", "--env", "prod"]
    command += ["--frontend-port", port, "--backend-port", port]
    process = subprocess.Popen(
        command,
        env=_env(tmp_path, WEB_CONCURRENCY=value),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # had it gone on to build and serve
    assert process.returncode != 0
    message = f"WEB_CONCURRENCY must be a whole number of workers, 1 or more; not {value!r}."
    assert message in stderr
    assert "Traceback" not in stderr


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


def test_several_workers_asked_for_without_redis_are_refused_out_loud(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert web_workers(shared_state=False, environ={"WEB_CONCURRENCY": "4"}, cpus=4) == 1
    assert "need HISTORA_REDIS_URL; running one" in capsys.readouterr().err
    assert web_workers(shared_state=False, environ={"WEB_CONCURRENCY": "1"}, cpus=4) == 1
    assert capsys.readouterr().err == ""


def _cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


V2_ROOT = "0::/\n"
# Without a cgroup namespace a process sees its host path; systemd puts a service in one.
V2_SERVICE = "0::/system.slice/histora.service\n"
V1 = "5:cpuset:/\n4:cpu,cpuacct:/\n3:memory:/\n"
V1_HOST_VIEW = "4:cpu,cpuacct:/docker/0123abcd\n"


@pytest.mark.parametrize(
    ("own", "files", "limit"),
    [
        (V2_ROOT, {}, None),
        (V2_ROOT, {"cpu.max": "max 100000\n"}, None),
        (V2_ROOT, {"cpu.max": "100000 100000\n"}, 1),
        (V2_ROOT, {"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: rounded up
        (V2_ROOT, {"cpu.max": "10000 100000\n"}, 1),  # a tenth of a CPU: still one
        (V2_ROOT, {"cpu.max": "garbage\n"}, None),
        # The service's own cgroup, or any parent, may hold the limit: the tightest binds.
        (V2_SERVICE, {"system.slice/histora.service/cpu.max": "100000 100000\n"}, 1),
        (
            V2_SERVICE,
            {
                "system.slice/cpu.max": "100000 100000\n",
                "system.slice/histora.service/cpu.max": "max 100000\n",
            },
            1,
        ),
        (V1, {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        (V1, {"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
        # Only the combined mount, and a host path that is not there: the mount is the
        # container's own cgroup.
        (
            V1_HOST_VIEW,
            {
                "cpu,cpuacct/cpu.cfs_quota_us": "100000\n",
                "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            },
            1,
        ),
    ],
)
def test_usable_cpus_follow_the_cpu_limit(
    tmp_path: Path, own: str, files: dict[str, str], limit: int | None
) -> None:
    root = _cgroup(tmp_path / "cgroup", files)
    (tmp_path / "own_cgroup").write_text(own)
    available = len(os.sched_getaffinity(0))
    expected = available if limit is None else min(available, limit)
    assert usable_cpus(root, tmp_path / "own_cgroup") == expected


def test_workers_serve_on_uvloop_with_httptools(tmp_path: Path) -> None:
    port = free_port()
    with _launcher(tmp_path, port) as launcher:
        _wait_serving(f"http://127.0.0.1:{port}/", launcher)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.read().decode() == "uvloop httptools"


def test_a_worker_whose_master_is_killed_stops_gracefully(tmp_path: Path) -> None:
    with launched_gunicorn(tmp_path) as (_launcher, master, lifespan_log):
        (worker,) = child_pids(master)
        os.kill(master, signal.SIGKILL)
        assert _wait_gone([worker]) == [], "the worker served on after its master was killed"
        assert lifespan_log.read_text().split() == ["stopped", str(worker)]


def test_gunicorn_does_not_start_when_its_launcher_is_killed_while_it_loads(
    tmp_path: Path,
) -> None:
    with _launcher(tmp_path, free_port(), IMPORT_SECONDS="3") as launcher:
        deadline = time.monotonic() + STOP_SECONDS
        while not (masters := child_pids(launcher.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        (master,) = masters
        time.sleep(0.5)  # reading its config, loading the app
        os.kill(launcher.pid, signal.SIGKILL)
        assert _wait_gone([master]) == [], "gunicorn started serving as an orphan"


def test_gunicorn_stops_gracefully_when_its_launcher_is_killed(tmp_path: Path) -> None:
    with launched_gunicorn(tmp_path) as (launcher, master, lifespan_log):
        (worker,) = child_pids(master)
        os.kill(launcher.pid, signal.SIGKILL)
        assert _wait_gone([master, worker]) == [], "gunicorn served on as an orphan"
        assert lifespan_log.read_text().split() == ["stopped", str(worker)]
