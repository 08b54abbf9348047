"""SQLite connections as ``histora.db`` configures them (PostgreSQL needs no setup)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from histora import sqlite_driver
from histora.db import create_engine
from histora.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'app.db'}",
        seed_on_start=False,
        local_model_autostart=False,
    )


async def test_sqlite_runs_in_wal_with_normal_sync(tmp_path: Path) -> None:
    engine = create_engine(_settings(tmp_path))
    try:
        async with engine.connect() as connection:
            journal = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
            synchronous = (await connection.execute(text("PRAGMA synchronous"))).scalar()
            foreign_keys = (await connection.execute(text("PRAGMA foreign_keys"))).scalar()
    finally:
        await engine.dispose()
    assert (journal, synchronous, foreign_keys) == ("wal", 1, 1)  # 1: NORMAL


async def test_sqlite_transactions_take_the_write_lock_up_front(tmp_path: Path) -> None:
    engine = create_engine(_settings(tmp_path))
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (x INTEGER)"))
        async with engine.connect() as connection, connection.begin():
            # Only a read so far, yet another writer is already locked out.
            await connection.execute(text("SELECT count(*) FROM t"))
            other = sqlite3.connect(tmp_path / "app.db", timeout=0, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
            await connection.execute(text("INSERT INTO t VALUES (1)"))
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar() == 1
    finally:
        await engine.dispose()


def _count_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the name of each function run on aiosqlite's thread, in order."""
    trips: list[str] = []
    run_on_thread = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await run_on_thread(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return trips


async def test_sqlite_statements_take_one_trip_to_the_driver_thread_and_read_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(_settings(tmp_path))
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, x TEXT UNIQUE)"))
        trips = _count_trips(monkeypatch)
        async with engine.connect() as connection, connection.begin():
            trips.clear()
            inserted = await connection.execute(
                text("INSERT INTO t (x) VALUES (:x)"), [{"x": f"row {n}"} for n in range(250)]
            )
            assert inserted.rowcount == 250
            assert len(trips) == 1
            single = await connection.execute(text("INSERT INTO t (x) VALUES ('last')"))
            assert single.lastrowid == 251
            trips.clear()
            rows = (await connection.execute(text("SELECT id, x FROM t ORDER BY id"))).all()
            assert len(trips) == 1
            assert len(rows) == 251 and tuple(rows[0]) == (1, "row 0")
            updated = await connection.execute(text("UPDATE t SET x = x || '!' WHERE id <= 10"))
            assert updated.rowcount == 10
            returned = await connection.execute(text("DELETE FROM t WHERE id > 245 RETURNING id"))
            assert sorted(returned.scalars()) == [246, 247, 248, 249, 250, 251]
            empty = await connection.execute(text("SELECT x FROM t WHERE id < 0"))
            assert empty.first() is None
            with pytest.raises(IntegrityError):
                await connection.execute(text("INSERT INTO t (x) VALUES ('row 20')"))
        async with engine.connect() as connection:
            # Server-side cursors keep the driver's own cursor and still stream.
            streamed = await connection.stream(text("SELECT x FROM t ORDER BY id"))
            assert [row.x async for row in streamed][:2] == ["row 0!", "row 1!"]
            with pytest.raises(OperationalError, match="no such table"):
                await connection.execute(text("SELECT * FROM missing"))
    finally:
        await engine.dispose()


async def test_a_connection_back_in_the_pool_after_a_commit_takes_no_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(_settings(tmp_path))
    try:
        await _ready(engine, 1)
        trips = _count_trips(monkeypatch)
        async with engine.connect() as connection:
            await connection.begin()
            await connection.execute(text("INSERT INTO turns VALUES (1)"))
            await connection.commit()
            trips.clear()
        # The pool's rollback on return found no transaction: nothing to send.
        assert trips == []
        async with engine.connect() as connection:
            await connection.begin()
            await connection.execute(text("INSERT INTO turns VALUES (2)"))
            trips.clear()
        # Returned mid-transaction: rolled back on the thread, the write undone.
        assert trips == ["rollback"]
        assert await _written(engine) == [1]
        turns = sqlite_driver._turns_for(str(tmp_path / "app.db"))
        assert not turns.lock.locked()
        async with engine.connect() as connection:
            await connection.begin()
            await connection.execute(text("INSERT INTO turns VALUES (3)"))
            # SQLite's transaction ends behind SQLAlchemy's back (as an INSERT OR
            # ROLLBACK conflict would end it): no trip, and the turn is handed on.
            await connection.exec_driver_sql("ROLLBACK")
            trips.clear()
        assert trips == [] and not turns.lock.locked()
        assert await _written(engine) == [1]
    finally:
        await engine.dispose()


def _fail_fast_on_a_taken_lock(engine: AsyncEngine) -> None:
    """SQLite's own wait off: a transaction that meets its write lock fails at once."""

    @event.listens_for(engine.sync_engine, "connect")
    def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()


async def _write(engine: AsyncEngine, n: int, *, hold: float = 0) -> None:
    async with engine.begin() as connection:
        await asyncio.sleep(hold)
        await connection.execute(text("INSERT INTO turns VALUES (:n)"), {"n": n})


async def _ready(engine: AsyncEngine, connections: int) -> None:
    """The turns table, and pooled connections enough for every writer to come: a new
    connection takes a few trips to its thread, which would muddle the order asked."""
    async with contextlib.AsyncExitStack() as stack:
        opened = [await stack.enter_async_context(engine.connect()) for _ in range(connections)]
        async with opened[0].begin():
            await opened[0].execute(text("CREATE TABLE turns (n INTEGER)"))


async def _written(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT n FROM turns ORDER BY rowid"))
        return list(rows.scalars())


async def test_sqlite_transactions_of_one_process_take_turns_in_order(tmp_path: Path) -> None:
    engine = create_engine(_settings(tmp_path))
    _fail_fast_on_a_taken_lock(engine)
    try:
        await _ready(engine, 6)
        first = asyncio.create_task(_write(engine, 0, hold=0.3))
        await asyncio.sleep(0.05)  # the first holds the write lock
        others = []
        for n in range(1, 6):
            others.append(asyncio.create_task(_write(engine, n)))
            await asyncio.sleep(0.02)  # asked in this order
        await asyncio.gather(first, *others)  # none met SQLite's lock ("database is locked")
        assert await _written(engine) == [0, 1, 2, 3, 4, 5]
    finally:
        await engine.dispose()


async def test_a_queue_of_short_turns_is_not_taken_for_a_lost_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_driver, "TURN_TIMEOUT_SECONDS", 0.4)
    engine = create_engine(_settings(tmp_path))
    _fail_fast_on_a_taken_lock(engine)
    try:
        await _ready(engine, 4)
        # The last waits about 0.75 s, longer than the timeout; no turn is held that long.
        writers = []
        for n in range(3):
            writers.append(asyncio.create_task(_write(engine, n, hold=0.25)))
            await asyncio.sleep(0.02)
        await asyncio.gather(*writers)
        assert await _written(engine) == [0, 1, 2]
    finally:
        await engine.dispose()


async def test_a_turn_is_handed_on_by_a_rollback_and_by_a_cancelled_wait(tmp_path: Path) -> None:
    engine = create_engine(_settings(tmp_path))
    _fail_fast_on_a_taken_lock(engine)
    try:
        await _ready(engine, 3)
        turns = sqlite_driver._turns_for(str(tmp_path / "app.db"))
        with pytest.raises(OperationalError):
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO missing VALUES (1)"))
        assert not turns.lock.locked()

        holder = asyncio.create_task(_write(engine, 1, hold=0.3))
        await asyncio.sleep(0.05)
        waiter = asyncio.create_task(_write(engine, 2))
        await asyncio.sleep(0.05)
        waiter.cancel()  # e.g. the page it worked for went away
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        await holder
        assert not turns.lock.locked()
        await _write(engine, 3)  # the pool and the turns still work
        assert await _written(engine) == [1, 3]
    finally:
        await engine.dispose()


async def test_a_lost_turn_costs_one_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_driver, "TURN_TIMEOUT_SECONDS", 1.0)
    engine = create_engine(_settings(tmp_path))
    try:
        await _ready(engine, 1)
        turns = sqlite_driver._turns_for(str(tmp_path / "app.db"))
        # A turn never handed on (its release lost): the next transaction waits once,
        # then goes ahead; the ones after it do not wait for the lost turn again.
        lost = turns.lock
        await lost.acquire()
        turns.taken_at = asyncio.get_running_loop().time()
        started = time.monotonic()
        await _write(engine, 1)
        assert time.monotonic() - started >= 1.0
        assert turns.lock is not lost
        started = time.monotonic()
        await _write(engine, 2)
        assert time.monotonic() - started < 1.0
    finally:
        await engine.dispose()


async def test_a_failed_commit_ends_its_transaction_and_its_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(_settings(tmp_path))
    _fail_fast_on_a_taken_lock(engine)
    try:
        await _ready(engine, 1)
        turns = sqlite_driver._turns_for(str(tmp_path / "app.db"))
        commit = aiosqlite.Connection.commit

        async def fails_once(self: aiosqlite.Connection) -> None:
            monkeypatch.setattr(aiosqlite.Connection, "commit", commit)
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(aiosqlite.Connection, "commit", fails_once)
        async with engine.connect() as connection:
            await connection.begin()
            await connection.execute(text("INSERT INTO turns VALUES (1)"))
            with pytest.raises(OperationalError, match="disk I/O"):
                await connection.commit()
        assert not turns.lock.locked()
        await _write(engine, 2)  # SQLite's lock is free too (it would fail at once)
        assert await _written(engine) == [2]
    finally:
        await engine.dispose()
