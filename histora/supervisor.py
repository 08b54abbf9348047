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
import math
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

_PROC = Path("/proc")
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


def _stat_fields(pid: str) -> list[str]:
    """The fields after "pid (comm)" in /proc/<pid>/stat; comm may hold spaces and ")"."""
    try:
        return (_PROC / pid / "stat").read_text().rpartition(")")[2].split()
    except OSError:  # the process ended while we looked
        return []


def child_pids(pid: int) -> list[int]:
    """The live (not yet exited) child processes of ``pid``, from /proc."""
    children: list[int] = []
    for entry in _PROC.glob("[0-9]*"):
        fields = _stat_fields(entry.name)
        if len(fields) > 1 and fields[0] not in ("Z", "X") and int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def _is_server(pid: int) -> bool:
    try:
        command = (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(SERVER_PROGRAM.encode() in part for part in command)


def _send(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    global _stop_requested
    _stop_requested = True
    children = child_pids(os.getpid())
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
    if sys.platform == "win32" or not _PROC.is_dir():
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


# Reflex's own rule for the number of workers: 2 x cores + 1, at most 8.
MAX_DEFAULT_WORKERS = 8
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_OWN_CGROUP = Path("/proc/self/cgroup")


def _cgroup_dirs(mount: Path, path: str) -> list[Path]:
    """The process's cgroup directory under ``mount``, then each parent up to ``mount``.

    A limit on any of them binds. Without a cgroup namespace the path may be the host's
    view, missing here; the mount itself is then the container's own cgroup.
    """
    parts = [part for part in path.split("/") if part]
    if ".." in parts:
        parts = []
    return [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _v2_limit(directory: Path) -> float | None:
    try:  # "max 100000", or "<quota> <period>"
        quota, period = (directory / "cpu.max").read_text().split()[:2]
        return None if quota == "max" or int(period) <= 0 else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_limit(directory: Path) -> float | None:
    try:  # a quota of -1 means none
        quota_us = int((directory / "cpu.cfs_quota_us").read_text())
        period_us = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _cpu_limit(root: Path, own_cgroup: Path) -> float | None:
    """The tightest CPU limit on this process, in CPUs (``docker run --cpus``, Kubernetes
    limits, systemd ``CPUQuota=``), from cgroup v2 or v1; None when there is none."""
    v2_path = v1_path = "/"
    try:
        lines = own_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:  # "0::/path" (v2), "4:cpu,cpuacct:/path" (v1)
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        if not fields[1]:
            v2_path = fields[2]
        elif "cpu" in fields[1].split(","):
            v1_path = fields[2]
    limits = [_v2_limit(directory) for directory in _cgroup_dirs(root, v2_path)]
    for mount in (root / "cpu", root / "cpu,cpuacct"):
        limits += [_v1_limit(directory) for directory in _cgroup_dirs(mount, v1_path)]
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def usable_cpus(root: Path = _CGROUP_ROOT, own_cgroup: Path = _OWN_CGROUP) -> int:
    """The CPUs this process may run on, capped by its CPU limit (rounded up).

    ``os.cpu_count()`` counts the host's: in a container limited to one CPU on a large
    host it would size the server for all of them, a worker (a whole app) per core.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    limit = _cpu_limit(root, own_cgroup)
    return cpus if limit is None else max(1, min(cpus, math.ceil(limit)))


def web_workers(*, shared_state: bool, environ: Mapping[str, str], cpus: int) -> int:
    """How many server workers to run.

    Several only when the Reflex state is shared (Redis): with in-memory state, a browser
    whose reconnection lands on another worker would lose its page. Then WEB_CONCURRENCY,
    or Reflex's rule (2 x cores + 1, at most 8).
    """
    asked = web_concurrency(environ)
    if not shared_state:
        if asked is not None and asked > 1:
            sys.stderr.write(
                "histora: WEB_CONCURRENCY asks for several workers, which need HISTORA_REDIS_URL; "
                "running one.\n"
            )
        return 1
    return asked if asked is not None else min(cpus * 2 + 1, MAX_DEFAULT_WORKERS)


def web_concurrency(environ: Mapping[str, str]) -> int | None:
    """WEB_CONCURRENCY, checked: gunicorn itself reads it on import, and answers a bad
    value with a traceback, so rxconfig checks it before `reflex run` starts gunicorn."""
    raw = environ.get("WEB_CONCURRENCY", "").strip()
    if not raw:
        return None
    if not raw.isdecimal() or int(raw) < 1:
        raise SystemExit(
            f"WEB_CONCURRENCY must be a whole number of workers, 1 or more; not {raw!r}."
        )
    return int(raw)
