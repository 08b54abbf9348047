"""`reflex run --env prod` passes stop signals on to the server it waits for."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from histora.supervisor import child_pids, is_reflex_run_prod

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")

# Stands in for gunicorn's master: stops cleanly on SIGTERM or SIGINT, saying which.
SERVER = textwrap.dedent(
    """
    import signal, sys, time
    def stop(signum, frame):
        print("server stopped by", signal.Signals(signum).name, flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("server ready", flush=True)
    while True:
        time.sleep(0.05)
    """
)

# Stands in for `reflex run`: installs the handlers, then runs the server to completion
# as Reflex does (subprocess.run), or only sleeps when it has no server yet.
SUPERVISOR = textwrap.dedent(
    """
    import subprocess, sys, time
    from histora.supervisor import forward_stop_signals
    forward_stop_signals()
    if sys.argv[1] == "server":
        result = subprocess.run([sys.executable, "-c", sys.argv[2]])
        print("supervisor done, server exit", result.returncode, flush=True)
    else:
        print("server ready", flush=True)
        time.sleep(60)
    """
)


def _start(mode: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, mode, SERVER],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "server ready"
    return process


def _wait(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=20)
    return process.returncode, output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_reaches_the_server_and_the_supervisor_waits_for_it(
    sig: signal.Signals,
) -> None:
    supervisor = _start("server")
    (server,) = child_pids(supervisor.pid)

    supervisor.send_signal(sig)
    code, output = _wait(supervisor)

    assert f"server stopped by {sig.name}" in output
    assert "supervisor done, server exit 0" in output
    assert code == 0
    assert server not in child_pids(supervisor.pid)


def test_a_second_interrupt_ends_the_supervisor_at_once() -> None:
    supervisor = _start("server")
    (server,) = child_pids(supervisor.pid)
    # A server that ignores the first interrupt, as a hung one would.
    subprocess.run(["kill", "-STOP", str(server)], check=True)
    try:
        supervisor.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert supervisor.poll() is None
        supervisor.send_signal(signal.SIGINT)
        code, _ = _wait(supervisor)
    finally:
        subprocess.run(["kill", "-KILL", str(server)], check=False)
    assert code != 0


def test_without_a_server_a_stop_signal_ends_the_supervisor_as_before() -> None:
    supervisor = _start("sleep")

    supervisor.send_signal(signal.SIGTERM)
    code, _ = _wait(supervisor)

    assert code == -signal.SIGTERM


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/app/.venv/bin/reflex", "run", "--env", "prod"], True),
        (["reflex", "run", "--env=prod", "--backend-port", "3000"], True),
        (["reflex", "run", "--frontend-port", "3000", "--env", "prod"], True),
        (["reflex", "run"], False),
        (["reflex", "run", "--env", "dev"], False),
        (["reflex", "export", "--env", "prod"], False),
        (["/usr/lib/python3/gunicorn/__main__.py", "--preload"], False),
        (["reflex"], False),
    ],
)
def test_only_the_production_reflex_run_forwards_signals(argv: list[str], expected: bool) -> None:
    assert is_reflex_run_prod(argv) is expected
