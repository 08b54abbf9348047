"""Running Alembic migrations from code (startup, CLI, tests)."""

from __future__ import annotations

from alembic.config import Config
from filelock import FileLock

from alembic import command
from histora.db import sync_database_url
from histora.settings import PROJECT_ROOT, Settings


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    config.set_main_option("sqlalchemy.url", sync_database_url(database_url))
    config.attributes["configure_logging"] = False
    return config


def upgrade_to_head(settings: Settings, database_url: str | None = None) -> None:
    """Bring the schema to the newest revision; safe to call from several workers."""
    url = database_url or settings.resolved_database_url
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(settings.data_dir / "migrate.lock"), timeout=120):
        command.upgrade(alembic_config(url), "head")
