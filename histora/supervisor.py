"""A clean stop for `reflex run --env prod` under gunicorn.

`reflex run --env prod` starts gunicorn as a child process and waits for it, and it does
not handle SIGTERM. So `docker stop` or systemd, which signal that process alone, would
kill it (or, when it is a container's PID 1, see the signal ignored) and leave gunicorn
and its workers running, or killed later without their shutdown: the replies in flight
not saved as stopped, the local model server not stopped. rxconfig installs these
handlers in that process, so a stop signal is passed on to gunicorn's master, which stops
its workers gracefully, and `reflex run` exits when gunicorn has.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
from pathlib import Path
from types import FrameType

_PROC = Path("/proc")


def is_reflex_run_prod(argv: list[str]) -> bool:
    """Whether this process is `reflex run --env prod` (not a worker it started).

    The development server keeps Reflex's own handling of Ctrl-C.
    """
    if len(argv) < 2 or Path(argv[0]).name != "reflex" or argv[1] != "run":
        return False
    options = argv[2:]
    return "--env=prod" in options or any(
        option == "--env" and value == "prod" for option, value in itertools.pairwise(options)
    )


def child_pids(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc; none where there is no /proc)."""
    children: list[int] = []
    for stat in _PROC.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = text.rpartition(")")[2].split()
        if len(fields) > 1 and fields[0] != "Z" and int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _signal_children(signum: int) -> bool:
    """Send ``signum`` to this process's children; whether there were any."""
    children = child_pids(os.getpid())
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)
    return bool(children)


def _on_terminate(signum: int, frame: FrameType | None) -> None:
    if _signal_children(signum):
        return  # keep waiting: `reflex run` returns once the server has stopped
    # Nothing to stop yet (still building): end as an unhandled SIGTERM would.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    # A terminal's Ctrl-C reaches gunicorn as well; `kill -INT` on this process does not.
    # A second interrupt ends this process at once, as Python's default would.
    signal.signal(signum, signal.default_int_handler)
    if not _signal_children(signum):
        raise KeyboardInterrupt


def forward_stop_signals() -> None:
    """Pass SIGTERM and SIGINT on to the child processes instead of dying of them."""
    if sys.platform == "win32" or not _PROC.is_dir():
        return
    signal.signal(signal.SIGTERM, _on_terminate)
    signal.signal(signal.SIGINT, _on_interrupt)
