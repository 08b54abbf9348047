"""Database engines and sessions: the only place that builds engines.

PostgreSQL goes through psycopg 3 (async), SQLite through aiosqlite (one trip to its
thread per statement, see ``sqlite_driver``). Sessions are short-lived: open one per
unit of work, never across a model call or a stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from histora import sqlite_driver
from histora.settings import Settings

SessionFactory = async_sessionmaker[AsyncSession]


def async_database_url(url: str) -> str:
    """The URL with the async driver this project uses for its backend."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def sync_database_url(url: str) -> str:
    """The URL with a synchronous driver (for Alembic and CLI tools)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def prepare_sqlite_file(url: str) -> None:
    """Create the folder of a SQLite file so the first connection can create it."""
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def configure_sqlite(engine: Any, *, begin_immediate: bool = True) -> None:
    """Make SQLite behave: foreign keys on, WAL, real and serialised transactions.

    pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINTs; the
    standard SQLAlchemy recipe takes over BEGIN so nested transactions work. The async
    engine's dialect (``sqlite_driver``) begins its transactions itself
    (``begin_immediate=False``).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        # Under WAL, NORMAL syncs at checkpoints instead of on every commit. A commit is
        # still durable when the app (or the process) crashes: it is in the WAL file, in
        # the OS's hands. Only a power loss or an OS crash can drop the last commits
        # (never corrupt the database). This keeps an fsync off the path of every chat
        # send. PostgreSQL is unaffected and keeps its own synchronous_commit.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    if not begin_immediate:
        return

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and
        # then writes fails with "database is locked" when another writer got in first,
        # and busy_timeout cannot help it. Transactions here are short, so waiting is fine.
        connection.connection.driver_connection.execute("BEGIN IMMEDIATE")


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    url = url or settings.resolved_database_url
    if is_sqlite(url):
        prepare_sqlite_file(url)
        # Our aiosqlite dialect: one trip to its thread per statement, and transactions
        # that begin IMMEDIATE and take turns (see sqlite_driver).
        driver_url = make_url(url).set(drivername=sqlite_driver.DRIVER_NAME)
        engine = create_async_engine(
            driver_url.render_as_string(hide_password=False),
            echo=settings.database_echo,
            connect_args={"timeout": 30},
        )
        configure_sqlite(engine.sync_engine, begin_immediate=False)
        return engine
    return create_async_engine(
        async_database_url(url),
        echo=settings.database_echo,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_pre_ping=True,
    )


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def session_scope(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    """One unit of work; rolls back on error."""
    async with factory() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
