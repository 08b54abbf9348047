"""The ingestion loop runs in one worker per machine, and moves when that worker goes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from filelock import FileLock

from histora import bootstrap, deps, machine_lock
from histora.services import ingestion_worker
from histora.settings import Settings


class _RecordingWorker:
    """Stands in for the ingestion loop: notes that it runs, then runs until cancelled."""

    def __init__(self) -> None:
        self.running = asyncio.Event()

    async def run(self) -> None:
        self.running.set()
        await asyncio.Event().wait()


def _container(data_dir: Path) -> tuple[deps.Container, _RecordingWorker]:
    # No Redis or Chroma server: the loop would wait for one first.
    settings = Settings(_env_file=None, data_dir=data_dir, redis_url=None, chroma_url=None)
    container = deps.Container(settings)
    worker = _RecordingWorker()
    container.__dict__["ingestion_worker"] = worker
    return container, worker


async def test_the_loop_moves_to_a_remaining_worker_when_its_worker_stops(
    tmp_path: Path,
) -> None:
    first, first_loop = _container(tmp_path)
    second, second_loop = _container(tmp_path)
    first_run = bootstrap.ingestion_worker(first)
    await first_run.__aenter__()
    async with bootstrap.ingestion_worker(second):
        await asyncio.wait_for(first_loop.running.wait(), timeout=5)
        await asyncio.sleep(0.3)
        assert not second_loop.running.is_set()  # one loop per machine

        await first_run.__aexit__(None, None, None)  # that worker was replaced

        # It asks for the lock every second.
        await asyncio.wait_for(second_loop.running.wait(), timeout=5)


async def test_the_loop_looks_for_orphaned_documents_again_and_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A document left half done by a worker that died after this loop started (as when
    the loop moved here from it) must be found later too, not only at start."""
    looks: list[float] = []

    async def requeue_stale(factory: object) -> int:
        looks.append(asyncio.get_running_loop().time())
        return 0

    async def claim_next(factory: object) -> None:
        return None

    monkeypatch.setattr(ingestion_worker, "requeue_stale", requeue_stale)
    monkeypatch.setattr(ingestion_worker, "claim_next", claim_next)
    context = SimpleNamespace(session_factory=None)
    worker = ingestion_worker.IngestionWorker(
        lambda: context,  # type: ignore[arg-type,return-value]
        poll_seconds=0.01,
        requeue_seconds=0.1,
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(worker.run(), timeout=0.55)
    assert 4 <= len(looks) <= 7, looks


async def test_a_stop_signal_keeps_a_worker_from_taking_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forwarded: list[int] = []
    monkeypatch.setattr(machine_lock, "_stop_requested", threading.Event())
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: forwarded.append(signum))
    try:
        machine_lock.watch_stop_signals()
        machine_lock.watch_stop_signals()  # once is enough; twice changes nothing
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert forwarded == [signal.SIGTERM]  # the server's own handler still runs
    assert machine_lock.stop_requested()
    free = FileLock(str(tmp_path / "free.lock"))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(machine_lock.acquire_when_free(free, interval=0.05), 0.3)
    assert not free.is_locked
