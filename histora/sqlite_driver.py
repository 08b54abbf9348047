"""SQLite through aiosqlite with one trip to its thread per statement.

aiosqlite runs every call on the connection's own thread and hands the result back
to the event loop. SQLAlchemy's adapter makes four such calls for each statement
(open a cursor, execute, fetch the rows, close the cursor) and three for a write;
each trip costs 80-150 microseconds on a small machine, and a chat send runs five
statements before its reply can start. The cursor here runs a statement, reads its
rows, row count and description, and closes the sqlite3 cursor in one call on that
thread; everything else (the connection, the pool, server-side cursors, errors)
stays SQLAlchemy's own.

Pass :data:`DBAPI` as ``create_async_engine(..., module=DBAPI)`` on a
``sqlite+aiosqlite`` URL.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT, await_


@dataclass(frozen=True, slots=True)
class _Outcome:
    description: Any
    rowcount: int
    lastrowid: int | None
    rows: list[Any]


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
        self._outcome = _Outcome(None, -1, None, [])

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
        try:
            self._outcome = await_(self._run_async(operation, parameters, many=many))
        except Exception as error:  # noqa: BLE001 - raised again as the DBAPI's error
            self._adapt_connection._handle_exception(error)
        self._rows = deque(self._outcome.rows)

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
    __slots__ = ()
    _cursor_cls: type[AsyncAdapt_aiosqlite_cursor] = OneTripCursor


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        adapted = super().connect(*arg, **kw)
        return OneTripConnection(self, adapted._connection)


DBAPI = OneTripDBAPI(aiosqlite, sqlite3)
