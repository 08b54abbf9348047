"""Work done by one process per machine: whichever holds a file lock.

The local servers and the ingestion loop each run in one worker only. The other
workers keep asking for the lock, because the holder can go at any time (gunicorn
replaces a worker that crashed, timed out or was reloaded) and its work must go on in
one that stays.
"""

from __future__ import annotations

import asyncio

from filelock import FileLock, Timeout

# How often a worker without the lock asks for it again: one flock call.
TAKEOVER_INTERVAL_SECONDS = 1.0


def try_acquire(lock: FileLock) -> bool:
    """Take the lock if it is free, without waiting."""
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    return True


async def acquire_when_free(lock: FileLock, interval: float = TAKEOVER_INTERVAL_SECONDS) -> None:
    """Wait until this process holds the lock: its holder released it, or died."""
    # Polling, as nothing tells this process when another one releases a file lock.
    while not try_acquire(lock):  # noqa: ASYNC110
        await asyncio.sleep(interval)
