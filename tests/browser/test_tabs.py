"""Several tabs of one browser share one sign-in, across access-token expiry.

The refresh token lives in localStorage, which the tabs share; each tab keeps its own
access token. A tab that refreshes rotates the shared refresh token, and every other
tab must pick the new one up: presenting the rotated one later is refresh-token reuse,
which signs the user out everywhere.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from histora.services.tokens import SESSION_INVALID
from tests.browser.conftest import running_app, sign_up

pytestmark = pytest.mark.browser

ACCESS_TOKEN_TTL_SECONDS = 30  # the shortest the settings allow
REUSE_GRACE_SECONDS = 5  # for tabs refreshing at the same moment only


@pytest.fixture(scope="module")
def short_session_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The app with short-lived access tokens, and its log."""
    data_dir = tmp_path_factory.mktemp("tabs-browser-data")
    settings = {
        # A build of its own: Reflex bakes the backend's port into the frontend it builds.
        "REFLEX_WEB_WORKDIR": str(data_dir / "web"),
        "REFLEX_STATES_WORKDIR": str(data_dir / "states"),
        "HISTORA_ACCESS_TOKEN_TTL_SECONDS": str(ACCESS_TOKEN_TTL_SECONDS),
        "HISTORA_REFRESH_REUSE_GRACE_SECONDS": str(REUSE_GRACE_SECONDS),
    }
    with running_app(data_dir, settings) as url:
        yield url, data_dir / "app.log"


@pytest.fixture
def tabs(browser: Browser) -> Iterator[tuple[Page, Page]]:
    """Two tabs of one browser: one localStorage, two backend states."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    yield context.new_page(), context.new_page()
    context.close()


def _sign_up(tab: Page, app_url: str) -> float:
    """Sign up in this tab; returns when its access token was issued (time.time())."""
    sign_up(tab, app_url, f"tabs-{uuid.uuid4().hex[:8]}@example.com", name="Two Tabs")
    return time.time()


def _open_conversations(tab: Page, app_url: str) -> float:
    """Load the page; a tab without an access token refreshes, so returns when."""
    refreshed = time.time()
    tab.goto(f"{app_url}/conversations")
    expect(tab.get_by_test_id("no-conversations")).to_be_visible()
    return refreshed


def _wait_past_expiry(issued_at: float) -> None:
    """Until an access token issued at ``issued_at`` (time.time()) has expired."""
    time.sleep(max(0.0, issued_at + ACCESS_TOKEN_TTL_SECONDS + 2 - time.time()))


def _show_archived(tab: Page) -> None:
    """An action that needs the signed-in user, so the tab's session is checked now."""
    switch = tab.get_by_test_id("show-archived")
    switch.click()
    expect(switch).to_be_checked()


def _still_signed_in(tab: Page) -> None:
    expect(tab.get_by_text(SESSION_INVALID)).to_have_count(0)
    expect(tab.get_by_test_id("profile-link")).to_have_text("Two Tabs")


def _no_reuse_detected(app_log: Path) -> None:
    log = app_log.read_text()
    assert "auth.refresh_reuse" not in log and "auth.refresh_race" not in log


def test_tabs_take_turns_across_access_token_expiry(
    short_session_app: tuple[str, Path], tabs: tuple[Page, Page]
) -> None:
    app_url, app_log = short_session_app
    tab_a, tab_b = tabs
    a_issued = _sign_up(tab_a, app_url)
    _open_conversations(tab_a, app_url)

    # Past the grace, tab B (no access token of its own) rotates the shared token.
    time.sleep(REUSE_GRACE_SECONDS + 2)
    b_issued = _open_conversations(tab_b, app_url)
    _still_signed_in(tab_b)

    # Tab A's access token expires; its next action refreshes with the shared token.
    _wait_past_expiry(a_issued)
    a_refreshed = time.time()
    _show_archived(tab_a)
    _still_signed_in(tab_a)

    # Then tab B's, more than the grace after tab A rotated the token again.
    _wait_past_expiry(b_issued)
    time.sleep(max(0.0, a_refreshed + REUSE_GRACE_SECONDS + 2 - time.time()))
    _show_archived(tab_b)
    _still_signed_in(tab_b)

    tab_a.reload()
    _still_signed_in(tab_a)
    _no_reuse_detected(app_log)


def test_tabs_refreshing_at_the_same_moment_stay_signed_in(
    short_session_app: tuple[str, Path], tabs: tuple[Page, Page]
) -> None:
    app_url, app_log = short_session_app
    tab_a, tab_b = tabs
    _sign_up(tab_a, app_url)
    _open_conversations(tab_a, app_url)
    b_issued = _open_conversations(tab_b, app_url)

    _wait_past_expiry(b_issued)  # both access tokens have expired
    for tab in tabs:
        tab.get_by_test_id("show-archived").click()
    for tab in tabs:
        expect(tab.get_by_test_id("show-archived")).to_be_checked()
        _still_signed_in(tab)

    for tab in tabs:  # whatever token the tabs left stored still works
        tab.reload()
        _still_signed_in(tab)
    _no_reuse_detected(app_log)


def test_signing_out_in_one_tab_signs_the_others_out(app_url: str, tabs: tuple[Page, Page]) -> None:
    chatting, other = tabs
    sign_up(chatting, app_url, f"tabs-{uuid.uuid4().hex[:8]}@example.com", name="Two Tabs")
    chatting.goto(f"{app_url}/chat/socrates")
    composer = chatting.get_by_label("Your message")
    expect(composer).to_be_visible()

    other.goto(f"{app_url}/profile")
    other.get_by_test_id("sign-out").click()
    expect(other.get_by_test_id("profile-link")).to_have_count(0)

    # The chatting tab still holds an access token, good for minutes: no matter.
    composer.fill("Are you still there?")
    composer.press("Enter")
    expect(chatting.get_by_text("Please sign in to continue.")).to_be_visible()
    expect(chatting.get_by_test_id("user-message")).to_have_count(0)
    chatting.reload()
    expect(chatting.get_by_test_id("sign-in")).to_be_visible()
    expect(chatting.get_by_test_id("profile-link")).to_have_count(0)
