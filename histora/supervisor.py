"""A clean stop, and an honest exit status, for `reflex run --env prod` under gunicorn.

`reflex run --env prod` starts gunicorn as a child process, waits for it and exits 0
whatever gunicorn's status was, and it does not handle SIGTERM. So `docker stop` or
systemd, which signal that process alone, would kill it (or, when it is a container's
PID 1, see the signal ignored) and leave gunicorn and its workers running, or killed
later without their shutdown; and a server that failed to start would look like one
that was stopped on purpose, so no restart policy would start it again.

rxconfig installs these handlers in that process only. A stop signal (SIGTERM, or
SIGINT from a terminal or `kill -INT`) becomes a SIGTERM to gunicorn's master, which is
gunicorn's graceful stop (its SIGINT is the quick one), and `reflex run` exits when
gunicorn has. Before gunicorn has started, a stop signal ends the build's processes and
`reflex run` at once. If `reflex run` ends without having been asked to stop, it exits
with status 1.

``die_with_parent`` covers the opposite case, a parent killed outright: gunicorn.conf.py
has gunicorn's master and workers, and the local servers have themselves, stopped then.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from histora import procfs

SERVER_PROGRAM = "gunicorn"
# What `reflex run` exits with when its server ended by itself (crashed, or never booted).
UNASKED_END_STATUS = 1

_stop_requested = False
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _load_libc() -> ctypes.CDLL | None:
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)  # the C library the process runs on
    except OSError:
        return None


# Loaded once, here: die_with_parent also runs between fork and exec.
_LIBC = _load_libc()


def die_with_parent(signum: int = signal.SIGTERM) -> bool:
    """Have Linux send ``signum`` to this process when its parent ends (strictly: the
    parent's thread that started it), so a killed parent leaves no orphan behind.
    Returns whether that is now set."""
    return _LIBC is not None and _LIBC.prctl(_PR_SET_PDEATHSIG, signum) == 0


def is_reflex_run_prod(argv: list[str]) -> bool:
    """Whether this process is `reflex run --env prod` (not a worker it started).

    The development server keeps Reflex's own handling of Ctrl-C.
    """
    if len(argv) < 2 or argv[1] != "run":
        return False
    program = Path(argv[0])
    if program.name != "reflex" and program.parts[-2:] != ("reflex", "__main__.py"):
        return False
    options = [option.lower() for option in argv[2:]]
    return "--env=prod" in options or ("--env", "prod") in itertools.pairwise(options)


def _is_server(pid: int) -> bool:
    return any(SERVER_PROGRAM in argument for argument in procfs.command_line(pid))


def _send(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    global _stop_requested
    _stop_requested = True
    children = procfs.child_pids(os.getpid())
    servers = [pid for pid in children if _is_server(pid)]
    if servers:
        _send(servers, signal.SIGTERM)
        return  # keep waiting: `reflex run` returns once the server has stopped
    # Still building: stop whatever runs for the build, and end here. An exception rather
    # than the default action, which a container's PID 1 would not get.
    _send(children, signal.SIGTERM)
    raise SystemExit(128 + signum)


def _fail_unless_stopped() -> None:
    if _stop_requested:
        return
    sys.stderr.write(
        f"histora: the server ended without being asked to stop; exiting {UNASKED_END_STATUS}\n"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(UNASKED_END_STATUS)  # atexit cannot change the exit status otherwise


def forward_stop_signals() -> None:
    """Install the handlers (once; rxconfig may be read more than once)."""
    if sys.platform == "win32" or not procfs.PROC.is_dir():
        return
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers; Reflex reads its config there
    if signal.getsignal(signal.SIGTERM) is _on_stop_signal:
        return
    signal.signal(signal.SIGTERM, _on_stop_signal)
    # A SIGINT that was ignored (a background job) stays ignored.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_stop_signal)
    atexit.register(_fail_unless_stopped)
