"""Reflex configuration. Histora's own knobs live in histora.settings (HISTORA_*)."""

import os
import sys

import reflex as rx

from histora.db import async_database_url, prepare_sqlite_file, sync_database_url
from histora.settings import get_settings
from histora.supervisor import forward_stop_signals, is_reflex_run_prod
from histora.worker_sizing import web_concurrency

_settings = get_settings()

# The backend runs under uvicorn (in production, gunicorn's uvicorn workers, set up in
# gunicorn.conf.py), not Granian: uvicorn's websockets negotiate permessage-deflate, which
# shrinks the chat's websocket traffic several fold (bench/chat_overhead.py), and Granian
# has no websocket compression. `reflex run` then waits for gunicorn as a child process;
# histora.supervisor passes stop signals on to it.
os.environ.setdefault("REFLEX_USE_GRANIAN", "false")
if is_reflex_run_prod(sys.argv):
    web_concurrency(os.environ)  # a bad value stops here, before the build
    forward_stop_signals()

# Reflex inspects the database before the app starts; give a fresh SQLite file a home.
prepare_sqlite_file(_settings.resolved_database_url)

# `reflex run` learns the port it serves the pages on (an option, or the next free one
# when 3000 is busy) after first reading this file, and sets REFLEX_FRONTEND_PORT before
# the app reads it again: the pages' own origin is then allowed too (unless
# HISTORA_CORS_ORIGINS is set).
_port = os.environ.get("REFLEX_FRONTEND_PORT", "")
_frontend_port = int(_port) if _port.isdecimal() else None

config = rx.Config(
    app_name="histora",
    telemetry_enabled=False,
    db_url=sync_database_url(_settings.resolved_database_url),
    async_db_url=async_database_url(_settings.resolved_database_url),
    redis_url=_settings.redis_url,
    cors_allowed_origins=_settings.allowed_origins(_frontend_port),
    show_built_with_reflex=False,
    plugins=[
        rx.plugins.SitemapPlugin(),
        rx.plugins.RadixThemesPlugin(
            theme=rx.theme(accent_color="amber", gray_color="sand", radius="medium")
        ),
    ],
)
