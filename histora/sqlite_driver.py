"""SQLite through aiosqlite with one trip to its thread per statement.

aiosqlite runs every call on the connection's own thread and hands the result back
to the event loop. SQLAlchemy's adapter makes four such calls for each statement
(open a cursor, execute, fetch the rows, close the cursor) and three for a write;
each trip costs 80-150 microseconds on a small machine, and a chat send runs five
statements before its reply can start. The cursor here runs a statement, reads its
rows, row count and description, and closes the sqlite3 cursor in one call on that
thread; everything else (the connection, the pool, server-side cursors, errors)
stays SQLAlchemy's own.

Transactions of one process take turns on an in-process lock before they ask SQLite
for its write lock (``BEGIN IMMEDIATE``). SQLite makes a writer that finds the lock
taken sleep and retry, at 1, 2, 5, 10 and on up to 100 ms, so ten sends at once
waited up to 200 ms for transactions that each hold the lock for about a millisecond;
queued on the lock here, each starts as soon as the one before it ends. Other
processes on the same file still meet SQLite's own lock and ``busy_timeout``.

Importing this module registers the dialect as :data:`DRIVER_NAME`
(``sqlite+histora_aiosqlite``) for ``create_async_engine``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiosqlite
import structlog
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.util import EMPTY_DICT, await_

log = structlog.get_logger(__name__)

# A turn held this long is taken for lost (a release that never came) and the lock is
# replaced, so a lost release costs one wait and not one on every transaction after it.
# A transaction that really runs this long then meets SQLite's own lock and its
# busy_timeout (set in histora.db), as it would without turns.
TURN_TIMEOUT_SECONDS = 5.0


class _Turns:
    """Turn-taking for one database file on one event loop (a lock belongs to one loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: the loop is the key of the table this sits in, which would keep it.
        self._loop = weakref.ref(loop)
        self.lock = asyncio.Lock()
        self.taken_at = 0.0  # loop time at which the current turn was taken

    async def take(self) -> asyncio.Lock:
        """Wait for a turn, in the order asked; returns the lock that is now held."""
        while True:
            lock = self.lock
            try:
                async with asyncio.timeout(TURN_TIMEOUT_SECONDS):
                    await lock.acquire()
            except TimeoutError:
                held_for = asyncio.get_running_loop().time() - self.taken_at
                if self.lock is lock and held_for >= TURN_TIMEOUT_SECONDS:
                    self.lock = asyncio.Lock()
                    log.warning("sqlite.turn_lost", held_seconds=round(held_for, 1))
                continue  # a long queue of short turns: keep waiting
            if self.lock is not lock:  # replaced meanwhile: queue on the new one
                lock.release()
                continue
            self.taken_at = asyncio.get_running_loop().time()
            return lock

    def hand_on(self, lock: asyncio.Lock) -> None:
        """Release ``lock`` from any thread: a connection may be dropped by the garbage
        collector off the loop, or after the loop has closed."""

        def release() -> None:
            if lock.locked():
                lock.release()

        loop = self._loop()
        if loop is None:
            return  # the loop is gone, and its waiters with it
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            release()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(release)


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Turns]] = (
    weakref.WeakKeyDictionary()
)


def _turns_for(database: str) -> _Turns:
    loop = asyncio.get_running_loop()
    by_file = _turns.setdefault(loop, {})
    if database not in by_file:
        by_file[database] = _Turns(loop)
    return by_file[database]


def _shared_file(database: object) -> str | None:
    """The key under which connections share a database, or None for a private one."""
    if not isinstance(database, str) or not database:
        return None
    if database == ":memory:" or "mode=memory" in database:
        return None
    return database


@dataclass(frozen=True, slots=True)
class _Outcome:
    description: Any
    rowcount: int
    lastrowid: int | None
    rows: list[Any]


_NOTHING = _Outcome(None, -1, None, [])


def _run(
    connection: sqlite3.Connection, operation: str, parameters: Any, *, many: bool
) -> _Outcome:
    """On aiosqlite's thread: the whole statement, rows included."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        # Read after the rows: for a statement with RETURNING, sqlite3 counts the rows
        # as they are fetched.
        return _Outcome(description, cursor.rowcount, cursor.lastrowid, rows)
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statements each take one trip to aiosqlite's thread.

    The base class opens an aiosqlite cursor when it is built; this one holds no
    cursor between statements, only the outcome of the last one.
    """

    __slots__ = ("_outcome",)

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = deque()
        self._outcome = _NOTHING

    @property
    def description(self) -> Any:
        return self._outcome.description

    @property
    def rowcount(self) -> int:
        return self._outcome.rowcount

    @property
    def lastrowid(self) -> Any:
        return self._outcome.lastrowid

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        """Rows are always fetched whole; there is nothing to size."""

    async def _async_soft_close(self) -> None:
        """The sqlite3 cursor is already closed; the rows stay readable."""

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        return self._run(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        return self._run(operation, seq_of_parameters, many=True)

    def _run(self, operation: Any, parameters: Any, *, many: bool) -> None:
        self._outcome, self._rows = _NOTHING, deque()  # a failed statement leaves nothing
        try:
            outcome = await_(self._run_async(operation, parameters, many=many))
        except Exception as error:  # noqa: BLE001 - raised again as the DBAPI's error
            self._adapt_connection._handle_exception(error)
        self._rows = deque(outcome.rows)
        self._outcome = _Outcome(outcome.description, outcome.rowcount, outcome.lastrowid, [])

    async def _run_async(self, operation: Any, parameters: Any, *, many: bool) -> _Outcome:
        connection = cast(aiosqlite.Connection, self._connection)
        async with self._adapt_connection._execute_mutex:
            # aiosqlite's own way to run a function on the connection's thread, the
            # one its public methods use (SQLAlchemy's adapter reaches in alike).
            outcome: _Outcome = await connection._execute(  # type: ignore[no-untyped-call]
                _run, connection._conn, operation, parameters, many=many
            )
            return outcome

    def nextset(self) -> None:
        """sqlite3 has a single result set per statement."""


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_database", "_turn")
    _cursor_cls: type[AsyncAdapt_aiosqlite_cursor] = OneTripCursor

    def __init__(self, dbapi: Any, connection: Any, database: str | None) -> None:
        super().__init__(dbapi, connection)
        self._database = database
        # Held from BEGIN until the transaction ends (COMMIT, ROLLBACK or closing).
        self._turn: tuple[_Turns, asyncio.Lock] | None = None

    def begin_immediate(self) -> None:
        """BEGIN IMMEDIATE, once this process's earlier transactions on the file end."""
        try:
            await_(self._begin_immediate())
        except Exception as error:  # noqa: BLE001 - raised again as the DBAPI's error
            self._handle_exception(error)

    async def _begin_immediate(self) -> None:
        if self._database is not None:
            turns = _turns_for(self._database)
            self._turn = (turns, await turns.take())
        try:
            connection = cast(aiosqlite.Connection, self._connection)
            await connection.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._end_turn()
            raise

    def _end_turn(self) -> None:
        if self._turn is not None:
            (turns, lock), self._turn = self._turn, None
            turns.hand_on(lock)

    def commit(self) -> None:
        with self._then_end_turn():
            try:
                super().commit()
            except BaseException:
                # SQLAlchemy does not always roll back after a failed COMMIT (a connection
                # closed after it is returned to the pool unreset): end the transaction.
                with contextlib.suppress(Exception):
                    await_(cast(aiosqlite.Connection, self._connection).rollback())
                raise

    @contextlib.contextmanager
    def _then_end_turn(self) -> Iterator[None]:
        """Hand the turn on once the statement in the block has ended the transaction,
        whether it succeeded or not."""
        try:
            yield
        finally:
            self._end_turn()

    def rollback(self) -> None:
        with self._then_end_turn():
            # sqlite3's rollback does nothing outside a transaction, and the pool rolls
            # back every connection it takes back, most often just after a commit: skip
            # the trip to aiosqlite's thread (the flag is read without one). The flag is
            # read now, not after the thread's queue: nothing is left queued there,
            # since every statement is awaited, and a wait that was cancelled makes
            # SQLAlchemy invalidate the connection rather than roll it back.
            if self._in_transaction():
                super().rollback()

    def _in_transaction(self) -> bool:
        connection = cast(aiosqlite.Connection, self._connection)
        # A closed connection has nothing to roll back either (the base class skips it).
        return connection._connection is not None and connection.in_transaction

    def close(self) -> None:
        with self._then_end_turn():
            super().close()  # ends an open transaction

    def terminate(self) -> None:
        with self._then_end_turn():
            super().terminate()


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        adapted = super().connect(*arg, **kw)
        database = arg[0] if arg else kw.get("database")
        return OneTripConnection(self, adapted._connection, _shared_file(database))


DBAPI = OneTripDBAPI(aiosqlite, sqlite3)


class OneTripDialect(SQLiteDialect_aiosqlite):
    """aiosqlite with :data:`DBAPI`; every transaction begins IMMEDIATE, in turn.

    BEGIN is issued here rather than from a "begin" event so that an error or a
    cancellation while waiting goes through SQLAlchemy's own error handling (which
    invalidates a broken connection and resets the transaction state).
    """

    driver = "histora_aiosqlite"
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> OneTripDBAPI:
        return DBAPI

    def do_begin(self, dbapi_connection: Any) -> None:
        # The pool's proxy, or the adapted connection itself.
        connection = getattr(dbapi_connection, "dbapi_connection", dbapi_connection)
        connection.begin_immediate()


DRIVER_NAME = "sqlite+histora_aiosqlite"
registry.register(DRIVER_NAME.replace("+", "."), __name__, "OneTripDialect")
