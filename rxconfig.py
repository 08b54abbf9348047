"""Reflex configuration. Histora's own knobs live in histora.settings (HISTORA_*)."""

import reflex as rx

from histora.db import async_database_url, prepare_sqlite_file, sync_database_url
from histora.settings import get_settings

_settings = get_settings()
# Reflex inspects the database before the app starts; give a fresh SQLite file a home.
prepare_sqlite_file(_settings.resolved_database_url)

config = rx.Config(
    app_name="histora",
    telemetry_enabled=False,
    db_url=sync_database_url(_settings.resolved_database_url),
    async_db_url=async_database_url(_settings.resolved_database_url),
    redis_url=_settings.redis_url,
    cors_allowed_origins=_settings.allowed_origins(),
    show_built_with_reflex=False,
    plugins=[
        rx.plugins.SitemapPlugin(),
        rx.plugins.RadixThemesPlugin(
            theme=rx.theme(accent_color="amber", gray_color="sand", radius="medium")
        ),
    ],
)
