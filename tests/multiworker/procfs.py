"""What the kernel knows about the running app, read from /proc (Linux; no psutil here).

The tests use it to see the app from outside, exposing nothing new in the product:
which processes exist (histora.procfs, which the product's supervisor uses too), which
worker accepted a given TCP connection, and which process holds a file lock.
"""

from __future__ import annotations

import os
from pathlib import Path

from histora.procfs import PROC, child_pids, command_line, is_running

__all__ = ["child_pids", "command_line", "is_running"]  # the rest of the tests use them from here

_TCP_TABLES = (PROC / "net" / "tcp", PROC / "net" / "tcp6")
_TCP_ESTABLISHED = "01"


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in child_pids(pending.pop()):
            found.append(child)
            pending.append(child)
    return sorted(found)


def program_name(pid: int) -> str:
    args = command_line(pid)
    return Path(args[0]).name if args else ""


def processes_with_argument(*needles: str) -> list[int]:
    """Every process on the machine whose command line contains all ``needles``."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit() and is_running(int(entry.name)):
            args = command_line(int(entry.name))
            if all(needle in args for needle in needles):
                found.append(int(entry.name))
    return sorted(found)


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    fd_dir = PROC / str(pid) / "fd"
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def _server_side_inodes(server_port: int, client_port: int) -> set[int]:
    """Inodes of established sockets with local port ``server_port`` and peer ``client_port``."""
    inodes = set()
    for table in _TCP_TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if (
                local_port == server_port
                and remote_port == client_port
                and fields[3] == _TCP_ESTABLISHED
            ):
                inodes.add(int(fields[9]))
    return inodes


def connection_owner(candidates: list[int], *, server_port: int, client_port: int) -> int | None:
    """Which of ``candidates`` accepted the open connection from ``client_port``."""
    inodes = _server_side_inodes(server_port, client_port)
    for pid in candidates:
        if inodes & _socket_inodes(pid):
            return pid
    return None


def flock_holders(path: Path) -> set[int]:
    """Processes holding a flock() on ``path``, from /proc/locks."""
    stat = path.stat()
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    holders = set()
    for line in (PROC / "locks").read_text().splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 31115 fe:00:2203931 0 EOF"; blocked waiters add "->".
        if "->" in fields:
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            holders.add(int(fields[4]))
    return holders
