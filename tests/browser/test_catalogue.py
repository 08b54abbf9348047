"""A visitor browses the catalogue in a real browser."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

pytestmark = pytest.mark.browser


def test_home_filter_and_open_character(app_url: str, page: Page) -> None:
    science_total = httpx.get(f"{app_url}/api/v1/characters?category=science").json()["total"]

    page.goto(app_url)
    expect(page.get_by_test_id("featured-row")).to_be_visible()
    grid = page.get_by_test_id("catalogue-grid")
    expect(grid.get_by_test_id("character-card").first).to_be_visible()

    page.get_by_test_id("category-science").click()
    expect(page.get_by_test_id("featured-row")).to_be_hidden()
    expect(page.get_by_test_id("result-count")).to_have_text(f"{science_total} figures")
    cards = grid.get_by_test_id("character-card")
    expect(cards).to_have_count(science_total)
    labels = cards.get_by_test_id("category-badge").all_inner_texts()
    assert len(labels) == science_total
    assert {label.strip() for label in labels} == {"Science"}

    cards.filter(has_text="Marie Curie").click()
    expect(page).to_have_url(re.compile(r"/characters/marie-curie$"))
    expect(page.get_by_role("heading", name="Marie Curie")).to_be_visible()
    expect(page.get_by_text("1934", exact=False).first).to_be_visible()
    expect(page.get_by_test_id("starter-questions").locator(".rt-CalloutRoot")).to_have_count(3)
    expect(page.get_by_test_id("start-chat")).to_be_visible()


def test_search_finds_by_name(app_url: str, page: Page) -> None:
    page.goto(app_url)
    page.get_by_label("Search the catalogue").fill("confucius")
    grid = page.get_by_test_id("catalogue-grid")
    expect(grid.get_by_test_id("character-card")).to_have_count(1)
    expect(grid).to_contain_text("Confucius")


def test_unknown_character_shows_not_found(app_url: str, page: Page) -> None:
    page.goto(f"{app_url}/characters/nobody-at-all")
    expect(page.get_by_role("heading", name="Figure not found")).to_be_visible()


def test_phone_width_has_one_column(app_url: str, browser: object, page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(app_url)
    cards = page.get_by_test_id("catalogue-grid").get_by_test_id("character-card")
    expect(cards.first).to_be_visible()
    first, second = cards.nth(0).bounding_box(), cards.nth(1).bounding_box()
    assert first is not None and second is not None
    assert second["y"] > first["y"]  # stacked, not side by side
    assert first["width"] <= 390


def test_an_unknown_address_gets_the_sites_own_page(app_url: str, page: Page) -> None:
    page.goto(f"{app_url}/no/such/page")
    expect(page.get_by_test_id("not-found")).to_contain_text("Page not found")
    page.get_by_role("button", name="Browse the catalogue").click()
    expect(page).to_have_url(f"{app_url}/")


def test_api_docs_open_from_the_footer_with_nothing_from_outside(app_url: str, page: Page) -> None:
    # Anything not served by the app itself is refused, as on a machine with no internet.
    outside: list[str] = []

    def refuse_outside(route: Route) -> None:
        outside.append(route.request.url)
        route.abort()

    page.route(re.compile(r"^(?!" + re.escape(app_url) + r")https?://"), refuse_outside)
    page.goto(app_url)
    link = page.get_by_test_id("api-docs-link")
    # The app is built for "localhost"; the link follows the host the page came from.
    expect(link).to_have_attribute("href", f"{app_url}/api/v1/docs")

    page.goto(link.get_attribute("href") or "")
    expect(page.get_by_role("heading", name=re.compile("Histora API"))).to_be_visible()
    expect(page.locator(".opblock").first).to_be_visible()
    chat_route = page.locator(".opblock-summary-path", has_text="/api/v1/chat/sessions")
    expect(chat_route.first).to_be_visible()
    assert outside == []
