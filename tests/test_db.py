"""SQLite connections as ``histora.db`` configures them (PostgreSQL needs no setup)."""

from __future__ import annotations

import asyncio
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


async def test_sqlite_statements_take_one_trip_to_the_driver_thread_and_read_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips: list[str] = []
    run_on_thread = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await run_on_thread(self, fn, *args, **kwargs)

    engine = create_engine(_settings(tmp_path))
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, x TEXT UNIQUE)"))
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
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


def _fail_fast_on_a_taken_lock(engine: AsyncEngine) -> None:
    """SQLite's own wait off: a transaction that meets its write lock fails at once."""

    @event.listens_for(engine.sync_engine, "connect")
    def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()


async def test_sqlite_transactions_of_one_process_take_turns_in_order(tmp_path: Path) -> None:
    engine = create_engine(_settings(tmp_path))
    _fail_fast_on_a_taken_lock(engine)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE turns (n INTEGER)"))

        async def write(n: int, *, hold: float = 0) -> None:
            async with engine.begin() as connection:
                await asyncio.sleep(hold)
                await connection.execute(text("INSERT INTO turns VALUES (:n)"), {"n": n})

        first = asyncio.create_task(write(0, hold=0.2))
        await asyncio.sleep(0.05)  # the first holds the write lock
        others = []
        for n in range(1, 6):
            others.append(asyncio.create_task(write(n)))
            await asyncio.sleep(0.01)  # asked in this order
        await asyncio.gather(first, *others)  # none met SQLite's lock ("database is locked")
        async with engine.connect() as connection:
            order = (await connection.execute(text("SELECT n FROM turns ORDER BY rowid"))).scalars()
            assert list(order) == [0, 1, 2, 3, 4, 5]
    finally:
        await engine.dispose()


async def test_a_failed_transaction_hands_on_its_turn_and_a_lost_one_costs_one_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_driver, "TURN_TIMEOUT_SECONDS", 1.0)
    settings = _settings(tmp_path)
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (x INTEGER UNIQUE)"))
            await connection.execute(text("INSERT INTO t VALUES (1)"))
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO t VALUES (1)"))
        turn = sqlite_driver._turn_lock(str(tmp_path / "app.db"))
        assert not turn.locked()  # the rollback ended the failed transaction's turn

        # A turn never handed on (its release lost): the next transaction waits once,
        # then goes ahead; the ones after it do not wait for the lost turn again.
        await turn.acquire()
        started = time.monotonic()
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO t VALUES (2)"))
        assert time.monotonic() - started >= 1.0
        assert sqlite_driver._turn_lock(str(tmp_path / "app.db")) is not turn
        started = time.monotonic()
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO t VALUES (3)"))
        assert time.monotonic() - started < 1.0
    finally:
        await engine.dispose()
