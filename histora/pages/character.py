"""A character's page: bio, era, traits, knowledge horizon, starter questions."""

from __future__ import annotations

import reflex as rx

from histora import deps
from histora.components.characters import figure_not_found, portrait
from histora.components.layout import loading, page_layout, titled
from histora.models.characters import CharacterPublic
from histora.services import characters as characters_service
from histora.state.session import SessionState


class CharacterPageState(rx.State):
    character: CharacterPublic | None = None
    not_found: bool = False

    @rx.event
    async def load(self) -> None:
        character_id = str(self.router.url.path).rstrip("/").rsplit("/", 1)[-1]
        async with deps.db_session() as db:
            found = await characters_service.get_published(db, character_id=character_id)
        self.not_found = found is None
        self.character = (
            None if found is None else CharacterPublic.model_validate(found, from_attributes=True)
        )


def _fact(label: str, value: rx.Var[str]) -> rx.Component:
    return rx.vstack(
        rx.text(label, size="1", weight="bold", color=rx.color("gray", 10), trim="start"),
        rx.text(value, size="3"),
        spacing="1",
    )


def _profile(character: rx.Var[CharacterPublic]) -> rx.Component:
    return rx.vstack(
        rx.flex(
            portrait(character.portrait, character.name, size="128px"),
            rx.vstack(
                rx.badge(character.category_label, color_scheme="amber", size="2"),
                rx.heading(character.name, size="8", as_="h1"),
                rx.text(character.short_bio, size="4", color=rx.color("gray", 11)),
                rx.flex(
                    rx.foreach(
                        character.traits,
                        lambda trait: rx.badge(trait, variant="soft", radius="full", size="2"),
                    ),
                    wrap="wrap",
                    gap="var(--space-2)",
                ),
                spacing="3",
                align="start",
            ),
            direction=rx.breakpoints(initial="column", sm="row"),
            gap="var(--space-5)",
            align=rx.breakpoints(initial="start", sm="center"),
        ),
        rx.grid(
            _fact("LIVED", character.lifespan),
            _fact("ERA", character.era),
            _fact("REGION", character.region),
            _fact("KNOWS NOTHING AFTER", character.knowledge_horizon),
            columns=rx.breakpoints(initial="2", md="4"),
            gap="var(--space-4)",
            width="100%",
        ),
        rx.link(
            rx.button(rx.icon("message-circle"), "Start a conversation", size="3"),
            href="/chat/" + character.id,
            data_testid="start-chat",
        ),
        rx.separator(size="4"),
        rx.grid(
            rx.vstack(
                rx.heading("Biography", size="5", as_="h2"),
                rx.foreach(
                    character.long_bio.split("\n\n"),
                    lambda paragraph: rx.text(paragraph, size="3", line_height="1.7"),
                ),
                rx.heading("How they speak", size="4", as_="h3", margin_top="var(--space-4)"),
                rx.text(character.speaking_style, size="3", color=rx.color("gray", 11)),
                spacing="3",
            ),
            rx.vstack(
                rx.card(
                    rx.vstack(
                        rx.text(character.name, " says:", size="2", color=rx.color("gray", 10)),
                        rx.text(
                            "“", character.opener, "”", size="3", style={"font_style": "italic"}
                        ),
                        spacing="2",
                    ),
                    width="100%",
                ),
                rx.heading("Ask about", size="4", as_="h3"),
                rx.foreach(
                    character.starter_questions,
                    lambda question, index: rx.link(
                        rx.callout(
                            question, icon="message-circle-question", size="1", width="100%"
                        ),
                        href="/chat/" + character.id + "?starter=" + index.to(str),
                        underline="none",
                        width="100%",
                        data_testid="ask-about",
                    ),
                ),
                spacing="3",
                data_testid="starter-questions",
            ),
            columns=rx.breakpoints(initial="1", md="2"),
            gap="var(--space-6)",
            width="100%",
        ),
        spacing="6",
        width="100%",
    )


@rx.page(
    route="/characters/[character_id]",
    title=titled(CharacterPageState.character.name),
    on_load=[SessionState.restore, CharacterPageState.load],
)
def character_page() -> rx.Component:
    return page_layout(
        rx.cond(
            CharacterPageState.character,
            _profile(CharacterPageState.character.to(CharacterPublic)),
            rx.cond(
                CharacterPageState.not_found,
                figure_not_found(),
                loading(),
            ),
        ),
    )
