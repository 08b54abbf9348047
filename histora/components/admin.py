"""Navigation between the admin pages."""

from __future__ import annotations

import reflex as rx

ADMIN_SECTIONS = (
    ("users", "Users", "/admin", "users"),
    ("characters", "Characters", "/admin/characters", "library"),
)


def admin_nav(active: str) -> rx.Component:
    """Tabs-like links at the top of every admin page; ``active`` names the current one."""
    return rx.hstack(
        *[
            rx.link(
                rx.button(
                    rx.icon(icon, size=16),
                    label,
                    variant="solid" if key == active else "soft",
                    color_scheme="amber" if key == active else "gray",
                    size="2",
                ),
                href=href,
                data_testid=f"admin-nav-{key}",
            )
            for key, label, href, icon in ADMIN_SECTIONS
        ],
        spacing="2",
        padding_bottom="var(--space-3)",
        border_bottom=f"1px solid {rx.color('gray', 4)}",
        width="100%",
        as_="nav",
        aria_label="Admin sections",
    )
