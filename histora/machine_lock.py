"""Work done by one process per machine: whichever holds a file lock.

The local servers and the ingestion loop each run in one worker only. The other
workers keep asking for the lock, because the holder can go at any time (gunicorn
replaces a worker that crashed, timed out or was reloaded) and its work must go on in
one that stays. A worker that has been told to stop asks no more: when the whole
server stops, the workers go together, and the lock's work should not hop between
them on the way out.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from filelock import FileLock, Timeout

# How often a worker without the lock asks for it again: one flock call.
TAKEOVER_INTERVAL_SECONDS = 1.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_stop_requested = threading.Event()


def stop_requested() -> bool:
    """Whether this process got a stop signal since ``watch_stop_signals``."""
    return _stop_requested.is_set()


def watch_stop_signals() -> None:
    """Note a stop signal before the server's own handler runs (uvicorn's, which first
    lets open connections finish: up to 5 s of still running, during which this worker
    must not take over anything). Signals with no handler of the server's are left as
    they are; only the main thread may set handlers."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in STOP_SIGNALS:
        previous = signal.getsignal(signum)
        if callable(previous) and previous not in _noting_handlers:
            signal.signal(signum, _noting_stop(previous))


_Handler = Callable[[int, FrameType | None], Any]
_noting_handlers: set[_Handler] = set()


def _noting_stop(forward: _Handler) -> _Handler:
    def note_then_forward(received: int, frame: FrameType | None) -> None:
        _stop_requested.set()
        forward(received, frame)

    _noting_handlers.add(note_then_forward)
    return note_then_forward


def try_acquire(lock: FileLock) -> bool:
    """Take the lock if it is free, without waiting."""
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    return True


async def acquire_when_free(lock: FileLock, interval: float = TAKEOVER_INTERVAL_SECONDS) -> None:
    """Wait until this process holds the lock: its holder released it, or died. Never
    returns in a process that was told to stop."""
    # Polling, as nothing tells this process when another one releases a file lock.
    while stop_requested() or not try_acquire(lock):  # noqa: ASYNC110
        await asyncio.sleep(interval)
