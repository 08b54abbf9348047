"""The ingestion loop runs in one worker per machine, and moves when that worker goes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from histora import bootstrap, deps
from histora.settings import Settings


class _RecordingWorker:
    """Stands in for the ingestion loop: notes that it runs, then runs until cancelled."""

    def __init__(self) -> None:
        self.running = asyncio.Event()

    async def run(self) -> None:
        self.running.set()
        await asyncio.Event().wait()


def _container(data_dir: Path) -> tuple[deps.Container, _RecordingWorker]:
    settings = Settings(_env_file=None, data_dir=data_dir)
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
