"""Alembic environment wired to Histora's real metadata and database URL.

The URL is the one from settings unless the caller put one on the Alembic config
(``config.set_main_option("sqlalchemy.url", ...)``), which tests and the CLI do.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from sqlalchemy import Connection, create_engine, event, pool

from alembic import context
from histora.db import configure_sqlite, is_sqlite, sync_database_url
from histora.models import metadata
from histora.settings import get_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or sync_database_url(
        get_settings().resolved_database_url
    )


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with(connection)
        return
    url = _url()
    engine = create_engine(url, poolclass=pool.NullPool)
    if is_sqlite(url):
        configure_sqlite(engine)
        _without_foreign_keys(engine)
    with engine.connect() as conn:
        _run_with(conn)


def _without_foreign_keys(engine: Any) -> None:
    """Foreign keys off while SQLite migrates, as SQLite's own procedure for altering a
    table asks: batch mode rebuilds a table (copy, drop, rename), and with them on the
    drop first deletes every row, firing the ON DELETE actions of the tables that point
    at it (usage events would lose the message they record). They are checked after."""

    @event.listens_for(engine, "connect")
    def _off(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # after configure_sqlite's ON


def _run_with(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite needs batch mode for ALTERs
        compare_type=True,
        # SQLite's DDL is transactional too (Alembic assumes not): one transaction for
        # the whole upgrade, so the check below can still undo it.
        transactional_ddl=True if sqlite else None,
    )
    with context.begin_transaction():
        before = _broken_references(connection) if sqlite else set()
        context.run_migrations()
        if sqlite and (broken := _broken_references(connection) - before):
            raise RuntimeError(
                f"Migrating broke foreign keys (table, row, parent): {sorted(broken)[:5]}; "
                "nothing was changed."
            )


def _broken_references(connection: Connection) -> set[tuple[object, ...]]:
    """Rows whose parent is missing; ones there before a migration are not its doing."""
    return {tuple(row) for row in connection.exec_driver_sql("PRAGMA foreign_key_check")}


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
