"""Catalogue pieces: portrait, trait badges, the character card."""

from __future__ import annotations

import reflex as rx

from histora.models.characters import CharacterCard


def portrait(src: rx.Var[str] | str, name: rx.Var[str] | str, size: str = "64px") -> rx.Component:
    return rx.image(
        src=src,
        alt=name,
        width=size,
        height=size,
        border_radius="12px",
        flex_shrink="0",
        loading="lazy",
    )


def trait_badges(traits: rx.Var[list[str]], limit: int = 3) -> rx.Component:
    return rx.flex(
        rx.foreach(traits[:limit], lambda trait: rx.badge(trait, variant="soft", radius="full")),
        wrap="wrap",
        gap="var(--space-1)",
    )


def character_card(character: rx.Var[CharacterCard]) -> rx.Component:
    return rx.link(
        rx.card(
            rx.flex(
                rx.hstack(
                    portrait(character.portrait, character.name),
                    rx.vstack(
                        rx.heading(character.name, size="4", as_="h3"),
                        rx.text(character.lifespan, size="2", color=rx.color("gray", 11)),
                        rx.badge(
                            character.category_label,
                            color_scheme="amber",
                            variant="surface",
                            data_testid="category-badge",
                        ),
                        spacing="1",
                        align="start",
                    ),
                    align="center",
                    spacing="3",
                ),
                rx.text(character.short_bio, size="2", color=rx.color("gray", 12)),
                trait_badges(character.traits),
                direction="column",
                gap="var(--space-3)",
            ),
            height="100%",
            class_name="character-card",
            _hover={"border_color": rx.color("amber", 8)},
        ),
        href="/characters/" + character.id,
        underline="none",
        color="inherit",
        data_testid="character-card",
        aria_label=character.name,
    )


def figure_not_found() -> rx.Component:
    return rx.vstack(
        rx.heading("Figure not found", size="7"),
        rx.text("There is no historical figure at this address."),
        rx.link(rx.button("Browse the catalogue"), href="/"),
        spacing="4",
        align="start",
    )
