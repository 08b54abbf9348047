"""The Reflex app: pages, the REST API mounted into Reflex's backend, lifespan."""

import reflex as rx

from histora.api import create_api
from histora.bootstrap import lifespan
from histora.pages import (  # noqa: F401 - registers the pages
    admin,
    auth,
    character,
    chat,
    conversations,
    home,
    not_found,
    profile,
)
from histora.settings import get_settings

# `reflex run` learns the port it serves the pages on (an option, or the next free one
# when 3000 is busy) after reading rxconfig; the app module is imported later, so the
# origins allowed for its own pages are set here.
_config = rx.config.get_config()
_config.cors_allowed_origins = tuple(get_settings().allowed_origins(_config.frontend_port))
app = rx.App(api_transformer=create_api(frontend_port=_config.frontend_port))
app.register_lifespan_task(lifespan)
