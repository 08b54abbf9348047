"""The shared page frame: navbar, content, footer; responsive, light and dark."""

from __future__ import annotations

import reflex as rx
from reflex.constants import Dirs
from reflex.utils.imports import ImportVar
from reflex.vars import VarData

from histora import __version__
from histora.state.session import SessionState

CONTENT_MAX_WIDTH = "1200px"


def _brand() -> rx.Component:
    return rx.link(
        rx.hstack(
            rx.icon("landmark", size=24),
            rx.heading("Histora", size=rx.breakpoints(initial="5", sm="6"), weight="bold"),
            align="center",
            spacing="2",
        ),
        href="/",
        underline="none",
        color=rx.color("gray", 12),
        aria_label="Histora home",
    )


def _admin_menu() -> rx.Component:
    return rx.menu.root(
        rx.menu.trigger(
            rx.button(
                "Admin",
                rx.icon(
                    "chevron-down", size=14, display=rx.breakpoints(initial="none", sm="block")
                ),
                variant="ghost",
                color_scheme="gray",
                size="3",
                data_testid="nav-admin",
            )
        ),
        rx.menu.content(
            rx.menu.item(
                rx.icon("users", size=14),
                "Users",
                on_select=rx.redirect("/admin"),
                data_testid="nav-admin-users",
            ),
            rx.menu.item(
                rx.icon("library", size=14),
                "Characters & sources",
                on_select=rx.redirect("/admin/characters"),
                data_testid="nav-admin-characters",
            ),
        ),
    )


def _account_links() -> rx.Component:
    return rx.cond(
        SessionState.signed_in,
        rx.hstack(
            rx.cond(SessionState.is_admin, _admin_menu()),
            rx.link(
                rx.text("Conversations", display=rx.breakpoints(initial="none", sm="inline")),
                rx.icon(
                    "messages-square",
                    size=20,
                    display=rx.breakpoints(initial="inline", sm="none"),
                ),
                href="/conversations",
                size="3",
                color=rx.color("gray", 11),
                aria_label="Your conversations",
                data_testid="nav-conversations",
            ),
            rx.link(
                SessionState.user.display_name,
                href="/profile",
                size="3",
                color=rx.color("gray", 11),
                max_width=rx.breakpoints(initial="120px", sm="240px"),
                white_space="nowrap",
                overflow="hidden",
                text_overflow="ellipsis",
                data_testid="profile-link",
            ),
            align="center",
            spacing=rx.breakpoints(initial="3", sm="4"),
        ),
        rx.link(
            rx.button("Sign in", size="2", variant="soft"), href="/login", data_testid="nav-sign-in"
        ),
    )


def navbar() -> rx.Component:
    return rx.box(
        rx.hstack(
            _brand(),
            rx.spacer(),
            rx.hstack(
                rx.link(
                    "Catalogue",
                    href="/#catalogue",
                    size="3",
                    color=rx.color("gray", 11),
                    display=rx.breakpoints(initial="none", sm="inline"),
                ),
                _account_links(),
                rx.color_mode.button(size="2", variant="ghost", aria_label="Toggle dark mode"),
                align="center",
                spacing=rx.breakpoints(initial="3", sm="4"),
            ),
            align="center",
            max_width=CONTENT_MAX_WIDTH,
            margin_x="auto",
            padding_x=rx.breakpoints(initial="var(--space-4)", md="var(--space-6)"),
            padding_y="var(--space-3)",
        ),
        as_="header",
        position="sticky",
        top="0",
        z_index="10",
        background_color=rx.color("gray", 1, alpha=True),
        backdrop_filter="blur(8px)",
        border_bottom=f"1px solid {rx.color('gray', 4)}",
    )


# The API lives on the backend (another port in development). The address is worked
# out in the browser by Reflex's own getBackendURL, the rule its websocket and uploads
# follow: a configured localhost backend means "the host this page came from", so the
# link works wherever the site is reached, not only on the machine that built it.
_API_DOCS_URL: rx.Var[str] = rx.Var(
    _js_expr='new URL("api/v1/docs", getBackendURL(env.PING)).href',
    _var_data=VarData(
        imports={
            f"$/{Dirs.STATE_PATH}": "getBackendURL",
            "$/env.json": ImportVar(tag="env", is_default=True),
        }
    ),
).to(str)


def _api_docs_link() -> rx.Component:
    def link(href: str | rx.Var[str]) -> rx.Component:
        return rx.link(
            "API docs", href=href, size="2", is_external=True, data_testid="api-docs-link"
        )

    # The pages are prerendered, and React keeps prerendered attributes when it
    # hydrates; so the link is rendered anew, with the browser's address, once the
    # page is live. Until then it carries the address the site was built with.
    build_time = f"{rx.config.get_config().api_url.rstrip('/')}/api/v1/docs"
    return rx.cond(rx.State.is_hydrated, link(_API_DOCS_URL), link(build_time))


def footer() -> rx.Component:
    return rx.box(
        rx.flex(
            rx.text(
                "Histora: conversations with the people who made history.",
                size="2",
                color=rx.color("gray", 11),
            ),
            rx.spacer(),
            rx.hstack(
                _api_docs_link(),
                rx.text(f"v{__version__}", size="2", color=rx.color("gray", 10)),
                spacing="4",
            ),
            direction=rx.breakpoints(initial="column", sm="row"),
            gap="var(--space-3)",
            max_width=CONTENT_MAX_WIDTH,
            margin_x="auto",
            padding_x=rx.breakpoints(initial="var(--space-4)", md="var(--space-6)"),
            padding_y="var(--space-5)",
        ),
        as_="footer",
        border_top=f"1px solid {rx.color('gray', 4)}",
        margin_top="var(--space-8)",
    )


MAIN_ID = "main-content"
_SKIP_LINK_SHOWN = {
    "left": "var(--space-3)",
    "top": "var(--space-3)",
    "width": "auto",
    "height": "auto",
    "clip_path": "none",
}


def focus_script(target_id: str) -> str:
    """JavaScript that focuses the element ``target_id``, or the page's main content
    when that one is missing or cannot take the focus (a disabled box)."""
    return (
        f"const target = document.getElementById('{target_id}'); target?.focus(); "
        f"if (document.activeElement !== target) "
        f"document.getElementById('{MAIN_ID}')?.focus();"
    )


def skip_link(label: str, target_id: str) -> rx.Component:
    """The first stop of the Tab key: hidden until focused, it jumps past the navigation.

    A button, not a "#id" link: the router would take such a link for a navigation.
    """
    return rx.el.button(
        label,
        type="button",
        on_click=rx.vars.FunctionStringVar.create(f"() => {{ {focus_script(target_id)} }}"),
        position="fixed",
        left="0",
        top="0",
        width="1px",
        height="1px",
        overflow="hidden",
        white_space="nowrap",
        clip_path="inset(50%)",
        z_index="1000",
        padding="var(--space-2) var(--space-3)",
        border_radius="var(--radius-3)",
        background=rx.color("accent", 9),
        color="var(--accent-contrast)",
        font_size="var(--font-size-2)",
        cursor="pointer",
        _focus=_SKIP_LINK_SHOWN,
        data_testid="skip-link",
    )


def page_layout(
    *children: rx.Component,
    skip_label: str = "Skip to main content",
    skip_to: str = MAIN_ID,
) -> rx.Component:
    return rx.flex(
        skip_link(skip_label, skip_to),
        navbar(),
        rx.el.main(  # a real <main>, the landmark screen readers jump to
            *children,
            id=MAIN_ID,
            tab_index=-1,  # focusable by the skip link, not by Tab
            outline="none",
            width="100%",
            max_width=CONTENT_MAX_WIDTH,
            margin_x="auto",
            padding_x=rx.breakpoints(initial="var(--space-4)", md="var(--space-6)"),
            padding_y="var(--space-6)",
            flex="1",
        ),
        footer(),
        direction="column",
        min_height="100vh",
    )


def loading() -> rx.Component:
    """What a page shows while its data loads."""
    return rx.center(rx.spinner(size="3"), width="100%", padding="var(--space-8)")


def titled(name: rx.Var[str] | str) -> rx.Var[str]:
    """A page title that names what the page shows (a figure, say) before the app's
    name, as tabs and history list it; the app's name alone until it is loaded."""
    shown = rx.Var.create(name).to(str)
    return rx.cond(shown, shown + " · Histora", "Histora").to(str)
