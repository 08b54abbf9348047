"""Models and migrations agree: autogenerate finds nothing to do, on SQLite and on
the configured test database (PostgreSQL in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from histora.db import configure_sqlite, is_sqlite, sync_database_url
from histora.migrations import upgrade_to_head
from histora.models import metadata
from histora.settings import Settings


def _diff(url: str) -> list[object]:
    engine = create_engine(sync_database_url(url))
    if is_sqlite(url):
        configure_sqlite(engine)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_fresh_sqlite_migration_matches_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade_to_head(Settings(_env_file=None, data_dir=tmp_path), url)  # type: ignore[call-arg]
    assert _diff(url) == []


@pytest.mark.usefixtures("engine")
def test_test_database_migration_matches_models(database_url: str) -> None:
    # The session fixture migrated this database (PostgreSQL when configured).
    assert _diff(database_url) == []


@pytest.mark.usefixtures("engine")
def test_migration_creates_every_table(database_url: str) -> None:
    engine = create_engine(sync_database_url(database_url))
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(metadata.tables) <= tables
