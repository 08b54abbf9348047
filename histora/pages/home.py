"""Home: featured figures, category filter, search and the catalogue grid."""

from __future__ import annotations

import reflex as rx

from histora import deps
from histora.components.characters import character_card
from histora.components.layout import loading, page_layout
from histora.errors import HistoraError
from histora.models.characters import CategoryPublic, CharacterCard
from histora.services import characters as characters_service
from histora.state.session import SessionState

PAGE_SIZE = 24
ALL = "all"


class HomeState(rx.State):
    featured: list[CharacterCard] = []
    characters: list[CharacterCard] = []
    categories: list[CategoryPublic] = []
    total: int = 0
    category: str = ALL
    query: str = ""
    loading: bool = True
    error: str = ""

    @rx.var
    def has_more(self) -> bool:
        return len(self.characters) < self.total

    @rx.var
    def filtering(self) -> bool:
        return self.category != ALL or self.query.strip() != ""

    async def _fetch(self, *, offset: int = 0) -> None:
        category = None if self.category == ALL else self.category
        try:
            async with deps.db_session() as db:
                page = await characters_service.list_published(
                    db, category=category, query=self.query, offset=offset, limit=PAGE_SIZE
                )
        except HistoraError as exc:
            self.error = exc.public_message
            return
        self.error = ""
        self.characters = page.items if offset == 0 else [*self.characters, *page.items]
        self.total = page.total

    @rx.event
    async def load(self) -> None:
        self.loading = True
        requested = self.router.url.query_parameters.get("category", ALL)
        self.category = (
            requested if requested in {ALL, *characters_service.CATEGORY_LABELS} else ALL
        )
        async with deps.db_session() as db:
            self.categories = await characters_service.list_categories(db)
            self.featured = (
                await characters_service.list_published(db, featured=True, limit=12)
            ).items
        await self._fetch()
        self.loading = False

    @rx.event
    async def set_category(self, category: str) -> None:
        self.category = category
        await self._fetch()

    @rx.event
    async def set_query(self, query: str) -> None:
        self.query = query[: characters_service.MAX_QUERY_LENGTH]
        await self._fetch()

    @rx.event
    async def clear_filters(self) -> None:
        self.category = ALL
        self.query = ""
        await self._fetch()

    @rx.event
    async def load_more(self) -> None:
        await self._fetch(offset=len(self.characters))


def _hero() -> rx.Component:
    return rx.vstack(
        rx.heading("Talk with history", size=rx.breakpoints(initial="8", md="9"), as_="h1"),
        rx.text(
            "Ask Socrates about justice, Marie Curie about radium, Lincoln about union. "
            "Each figure answers in their own voice, from their own time.",
            size="4",
            color=rx.color("gray", 11),
            max_width="640px",
        ),
        spacing="3",
        padding_y="var(--space-4)",
    )


def _featured_row() -> rx.Component:
    return rx.cond(
        ~HomeState.filtering & (HomeState.featured.length() > 0),
        rx.vstack(
            rx.heading("Featured", size="5", as_="h2"),
            rx.grid(
                rx.foreach(HomeState.featured, character_card),
                columns=rx.breakpoints(initial="1", sm="2", lg="3"),
                gap="var(--space-4)",
                width="100%",
            ),
            spacing="3",
            width="100%",
            data_testid="featured-row",
        ),
    )


def _category_filter() -> rx.Component:
    return rx.flex(
        rx.button(
            "All",
            variant=rx.cond(HomeState.category == ALL, "solid", "soft"),
            on_click=HomeState.set_category(ALL),
            radius="full",
            size="2",
        ),
        rx.foreach(
            HomeState.categories,
            lambda category: rx.button(
                category.label,
                rx.badge(category.count, variant="surface", radius="full"),
                variant=rx.cond(HomeState.category == category.id, "solid", "soft"),
                on_click=HomeState.set_category(category.id),
                radius="full",
                size="2",
                data_testid="category-" + category.id,
            ),
        ),
        wrap="wrap",
        gap="var(--space-2)",
        role="group",
        aria_label="Filter by category",
    )


def _search_box() -> rx.Component:
    return rx.input(
        rx.input.slot(rx.icon("search", size=16)),
        placeholder="Search by name, era or place",
        value=HomeState.query,
        on_change=HomeState.set_query.debounce(250),
        max_length=characters_service.MAX_QUERY_LENGTH,
        size="3",
        width=rx.breakpoints(initial="100%", md="360px"),
        aria_label="Search the catalogue",
        type="search",
    )


def _catalogue() -> rx.Component:
    return rx.vstack(
        rx.flex(
            rx.heading("The catalogue", size="5", as_="h2", id="catalogue"),
            rx.spacer(),
            _search_box(),
            direction=rx.breakpoints(initial="column", md="row"),
            gap="var(--space-3)",
            width="100%",
            align=rx.breakpoints(initial="start", md="center"),
        ),
        _category_filter(),
        rx.cond(
            HomeState.error != "",
            rx.callout(HomeState.error, icon="triangle_alert", color_scheme="red"),
        ),
        rx.text(
            HomeState.total,
            rx.cond(HomeState.total == 1, " figure", " figures"),
            size="2",
            color=rx.color("gray", 11),
            data_testid="result-count",
        ),
        rx.cond(
            HomeState.loading,
            loading(),
            rx.cond(
                HomeState.total == 0,
                rx.vstack(
                    rx.text("No historical figures match your search."),
                    rx.button("Clear filters", on_click=HomeState.clear_filters, variant="soft"),
                    align="center",
                    width="100%",
                    padding="var(--space-6)",
                ),
                rx.grid(
                    rx.foreach(HomeState.characters, character_card),
                    columns=rx.breakpoints(initial="1", sm="2", md="3", lg="4"),
                    gap="var(--space-4)",
                    width="100%",
                    data_testid="catalogue-grid",
                ),
            ),
        ),
        rx.cond(
            HomeState.has_more,
            rx.center(
                rx.button("Show more", on_click=HomeState.load_more, variant="outline"),
                width="100%",
            ),
        ),
        spacing="4",
        width="100%",
    )


@rx.page(
    route="/", title="Histora: talk with history", on_load=[SessionState.restore, HomeState.load]
)
def index() -> rx.Component:
    return page_layout(
        rx.vstack(_hero(), _featured_row(), _catalogue(), spacing="7", width="100%"),
    )
