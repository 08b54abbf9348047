"""The page for addresses that lead nowhere, in the site's own frame."""

from __future__ import annotations

import reflex as rx

from histora.components.layout import page_layout
from histora.state.session import SessionState


@rx.page(route="404", title="Histora: page not found", on_load=SessionState.restore)
def not_found_page() -> rx.Component:
    return page_layout(
        rx.vstack(
            rx.heading("Page not found", size="7"),
            rx.text("Nothing lives at this address. It may have moved, or never existed."),
            rx.link(rx.button("Browse the catalogue"), href="/"),
            spacing="4",
            align="start",
            data_testid="not-found",
        )
    )
