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

app = rx.App(api_transformer=create_api())
app.register_lifespan_task(lifespan)
