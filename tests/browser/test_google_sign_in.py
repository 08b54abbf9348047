"""Firebase mode in a real browser: email sign-up through the Auth emulator, and the
"Continue with Google" button driving the Firebase JS SDK.

Google's pop-up itself needs Google's servers (the SDK loads its iframe library from
apis.google.com before opening it, even against the emulator), so here the outside
world is blocked and the page must explain the failure; the success path, a real
emulator-issued Google ID token exchanged for a session, is covered in
tests/pages/test_auth.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import running_app, sign_up
from tests.support import EMULATOR_PROJECT

pytestmark = [pytest.mark.browser, pytest.mark.firebase]


@pytest.fixture(scope="module")
def firebase_app_url(tmp_path_factory: pytest.TempPathFactory, emulator_host: str) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("firebase-browser-data")
    settings = {
        # A build of its own: Reflex bakes the backend's port into the frontend it
        # builds, and rebuilding the shared .web would point the other app's pages here.
        "REFLEX_WEB_WORKDIR": str(data_dir / "web"),
        "REFLEX_STATES_WORKDIR": str(data_dir / "states"),
        "HISTORA_AUTH_MODE": "firebase",
        "HISTORA_FIREBASE_PROJECT_ID": EMULATOR_PROJECT,
        "HISTORA_FIREBASE_WEB_API_KEY": "demo-web-api-key",
        "HISTORA_FIREBASE_AUTH_DOMAIN": f"{EMULATOR_PROJECT}.firebaseapp.com",
        "HISTORA_FIREBASE_AUTH_EMULATOR_HOST": emulator_host,
    }
    with running_app(data_dir, settings) as url:
        yield url


def _only_this_machine(route: Route) -> None:
    if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort("internetdisconnected")


def test_email_sign_up_goes_through_firebase(firebase_app_url: str, page: Page) -> None:
    email = f"fb-{uuid.uuid4().hex[:8]}@example.com"
    sign_up(page, firebase_app_url, email, name="Emmy Noether")
    expect(page.get_by_test_id("profile-link")).to_have_text("Emmy Noether")


def test_google_button_explains_when_google_cannot_be_reached(
    firebase_app_url: str, page: Page
) -> None:
    page.context.route("**/*", _only_this_machine)
    for path in ("/register", "/login"):
        page.goto(f"{firebase_app_url}{path}")
        button = page.get_by_test_id("google-sign-in")
        expect(button).to_have_text("Continue with Google")

    button.click()

    expect(page.get_by_test_id("auth-error")).to_contain_text("Google sign-in could")
    expect(button).to_be_enabled()  # free to try again
    expect(page.get_by_test_id("nav-sign-in")).to_be_visible()


def test_local_accounts_offer_no_google_button(app_url: str, page: Page) -> None:
    page.goto(f"{app_url}/login")
    expect(page.get_by_test_id("sign-in")).to_be_visible()
    expect(page.get_by_test_id("google-sign-in")).to_have_count(0)
