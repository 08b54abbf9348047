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

# The API's allowed origins include the port the pages are served on (rxconfig.py).
app = rx.App(api_transformer=create_api(frontend_port=rx.config.get_config().frontend_port))
app.register_lifespan_task(lifespan)
