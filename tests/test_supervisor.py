"""`reflex run --env prod` passes stop signals on to gunicorn and reports its failures."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from histora.procfs import child_pids
from histora.supervisor import UNASKED_END_STATUS, is_reflex_run_prod

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")

ROOT = Path(__file__).resolve().parent.parent

# Stands in for gunicorn's master (its command line names gunicorn): says which signal
# stopped it, or exits by itself with the status given.
SERVER = textwrap.dedent(
    """
    import signal, sys, time
    def stop(signum, frame):
        print("server stopped by", signal.Signals(signum).name, flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("child ready", flush=True)
    if sys.argv[2] == "crash":
        sys.exit(3)
    while True:
        time.sleep(0.05)
    """
)

# Stands in for `reflex run`: installs the handlers, then runs a child to completion
# as Reflex does (subprocess.run). The child is the server, or a build step.
SUPERVISOR = textwrap.dedent(
    """
    import subprocess, sys
    from histora.supervisor import forward_stop_signals
    forward_stop_signals()
    result = subprocess.run([sys.executable, "-c", *sys.argv[1:]])
    print("supervisor done, child exit", result.returncode, flush=True)
    """
)

# A build step (bun, say): anything that is not gunicorn.
BUILD_STEP = textwrap.dedent(
    """
    import time
    print("child ready", flush=True)
    time.sleep(60)
    """
)


@contextlib.contextmanager
def _supervisor(*child: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, *child], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "child ready"
        yield process
    finally:
        for pid in [*child_pids(process.pid), process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.communicate()


def _server(mode: str = "serve") -> tuple[str, ...]:
    return (SERVER, "gunicorn", mode)


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=20)
    return process.returncode, output


def _gone(pid: int) -> bool:
    """Exited and reaped (its parent waited for it)."""
    return not Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_stops_the_server_gracefully_and_the_supervisor_waits(
    sig: signal.Signals,
) -> None:
    with _supervisor(*_server()) as supervisor:
        (server,) = child_pids(supervisor.pid)

        supervisor.send_signal(sig)
        code, output = _finish(supervisor)

    # SIGTERM is gunicorn's graceful stop; its SIGINT would be the quick one.
    assert "server stopped by SIGTERM" in output
    assert "supervisor done, child exit 0" in output
    assert code == 0
    assert _gone(server)


def test_a_server_that_ends_by_itself_makes_the_supervisor_fail() -> None:
    with _supervisor(*_server("crash")) as supervisor:
        code, output = _finish(supervisor)

    assert "supervisor done, child exit 3" in output
    assert code == UNASKED_END_STATUS


def test_before_the_server_starts_a_stop_signal_ends_the_build_and_the_supervisor() -> None:
    with _supervisor(BUILD_STEP) as supervisor:
        (build_step,) = child_pids(supervisor.pid)

        supervisor.send_signal(signal.SIGTERM)
        code, output = _finish(supervisor)
        deadline = time.monotonic() + 10
        while not _gone(build_step) and time.monotonic() < deadline:
            time.sleep(0.05)  # reaped by init once the supervisor has gone

    assert code == 128 + signal.SIGTERM
    assert "supervisor done" not in output
    assert _gone(build_step)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/app/.venv/bin/reflex", "run", "--env", "prod"], True),
        (["reflex", "run", "--env=prod", "--backend-port", "3000"], True),
        (["reflex", "run", "--frontend-port", "3000", "--env", "PROD"], True),
        (
            ["/app/.venv/lib/python3.11/site-packages/reflex/__main__.py", "run", "--env", "prod"],
            True,
        ),
        (["reflex", "run"], False),
        (["reflex", "run", "--env", "dev"], False),
        (["reflex", "export", "--env", "prod"], False),
        (["/app/.venv/lib/python3.11/site-packages/gunicorn/__main__.py", "--preload"], False),
        (["reflex"], False),
    ],
)
def test_only_the_production_reflex_run_forwards_signals(argv: list[str], expected: bool) -> None:
    assert is_reflex_run_prod(argv) is expected
