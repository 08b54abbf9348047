"""The processes around this one, read from /proc (Linux; no psutil here).

Used to supervise `reflex run`'s server (histora.supervisor) and, in the tests, to see the
app from outside.
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def stat_fields(pid: int) -> list[str] | None:
    """The fields after "pid (comm)" in /proc/<pid>/stat (state, ppid, …); None when the
    process is gone. comm may hold spaces and ")"."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def is_running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    fields = stat_fields(pid)
    if not fields:
        return False
    return fields[0] not in ("Z", "X")


def child_pids(pid: int) -> list[int]:
    """The running child processes of ``pid``, in pid order."""
    found = []
    for entry in PROC.glob("[0-9]*"):
        fields = stat_fields(int(entry.name))
        if fields and len(fields) > 1 and fields[0] not in ("Z", "X") and int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def command_line(pid: int) -> list[str]:
    """The process's arguments, its program first; [] when it is gone."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
