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
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite needs batch mode for ALTERs
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        if connection.dialect.name == "sqlite":
            # Before the commit: a migration that broke a reference is rolled back.
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
