"""Models and migrations agree: autogenerate finds nothing to do, on SQLite and on
the configured test database (PostgreSQL in CI)."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Boolean, DateTime, Float, Integer, Numeric, create_engine, inspect

from alembic import command
from histora.db import configure_sqlite, is_sqlite, sync_database_url
from histora.migrations import alembic_config, upgrade_to_head
from histora.models import metadata
from histora.settings import PROJECT_ROOT, Settings


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


FIRST_REVISION = "4b08f6d9d323"


def _filler(column: dict[str, Any]) -> object:
    """Any value of the column's type, for columns a test does not care about."""
    kind = column["type"]
    if isinstance(kind, Boolean):
        return 0
    if isinstance(kind, Integer | Float | Numeric):
        return 1
    if isinstance(kind, DateTime):
        return "2026-01-01 00:00:00.000000"
    if "JSON" in type(kind).__name__.upper():
        return "[]"
    return "x"


def _insert(database: sqlite3.Connection, url: str, table: str, **given: object) -> None:
    """A row of ``table`` with the ``given`` values and filler in every other required
    column (read from the database as that revision left it)."""
    engine = create_engine(sync_database_url(url))
    try:
        columns = inspect(engine).get_columns(table)
    finally:
        engine.dispose()
    row = {
        c["name"]: _filler(c)
        for c in columns
        if not c["nullable"] and c["default"] is None and c.get("autoincrement") is not True
    }
    row.update(given)
    names = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    database.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(row.values()))


def test_migrating_sqlite_keeps_existing_messages_and_what_points_at_them(tmp_path: Path) -> None:
    """Later revisions alter tables that hold data: nothing is lost, and no reference
    (ON DELETE actions included) fires on the way, up or down."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = alembic_config(url)
    command.upgrade(config, FIRST_REVISION)
    user, session, message = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    dangling = uuid.uuid4().hex
    with sqlite3.connect(tmp_path / "old.db") as database:
        _insert(database, url, "users", id=user, email="old@example.com")
        _insert(database, url, "characters", id="socrates")
        _insert(database, url, "chat_sessions", id=session, user_id=user, character_id="socrates")
        _insert(database, url, "chat_messages", id=message, session_id=session, content="Hello")
        _insert(database, url, "usage_events", id=1, user_id=user, message_id=message)
        # Broken before (written with foreign keys off): it does not stop an upgrade.
        _insert(database, url, "usage_events", id=2, message_id=dangling)
    database.close()

    def kept() -> tuple[object, ...]:
        with sqlite3.connect(tmp_path / "old.db") as database:
            return (
                database.execute("SELECT content FROM chat_messages").fetchall(),
                database.execute("SELECT message_id, user_id FROM usage_events").fetchall(),
            )

    before = kept()
    assert before == ([("Hello",)], [(message, user), (dangling, None)])
    command.upgrade(config, "head")
    assert kept() == before
    with sqlite3.connect(tmp_path / "old.db") as database:
        assert database.execute("SELECT cut_short FROM chat_messages").fetchall() == [(0,)]
    command.downgrade(config, FIRST_REVISION)
    assert kept() == before


_BREAKING_REVISION = """
from alembic import op

revision = "b0000000dead"
down_revision = "{head}"


def upgrade() -> None:
    op.execute("DELETE FROM chat_sessions")  # its messages are left without a session


def downgrade() -> None:
    pass
"""


def test_a_sqlite_migration_that_breaks_references_changes_nothing(tmp_path: Path) -> None:
    """Foreign keys are off while SQLite migrates; a revision that leaves rows without
    their parent is refused whole."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    config = alembic_config(url)
    command.upgrade(config, "head")
    head = ScriptDirectory.from_config(config).get_current_head()
    user, session = uuid.uuid4().hex, uuid.uuid4().hex
    with sqlite3.connect(tmp_path / "app.db") as database:
        _insert(database, url, "users", id=user, email="old@example.com")
        _insert(database, url, "characters", id="socrates")
        _insert(database, url, "chat_sessions", id=session, user_id=user, character_id="socrates")
        _insert(database, url, "chat_messages", id=uuid.uuid4().hex, session_id=session)
    database.close()

    scripts = tmp_path / "alembic"
    shutil.copytree(PROJECT_ROOT / "alembic", scripts)
    (scripts / "versions" / "b0000000dead_breaks.py").write_text(
        _BREAKING_REVISION.format(head=head)
    )
    config.set_main_option("script_location", str(scripts))
    with pytest.raises(RuntimeError, match="Migrating broke foreign keys"):
        command.upgrade(config, "head")
    with sqlite3.connect(tmp_path / "app.db") as database:
        assert database.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
        assert database.execute("SELECT id FROM chat_sessions").fetchall() == [(session,)]
    database.close()
