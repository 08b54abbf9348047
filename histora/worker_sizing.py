"""How many server workers gunicorn runs (gunicorn.conf.py; rxconfig.py checks the
setting before `reflex run --env prod` starts).

Several only when the Reflex state is shared (Redis), sized by the CPUs this process may
really use: its affinity, capped by its cgroup's CPU limit, which ``os.cpu_count()``
ignores.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path

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
