"""Accounts in a real browser: sign up, sign out, sign in, reload, admin pages."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, USER_PASSWORD, sign_up

pytestmark = pytest.mark.browser


def _sign_in(
    page: Page, app_url: str, email: str, password: str, *, keep_url: bool = False
) -> None:
    if not keep_url:  # else the sign-in page is already open, with its `next`
        page.goto(f"{app_url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_test_id("sign-in").click()


def test_sign_up_out_in_and_reload(app_url: str, page: Page) -> None:
    email = f"reader-{uuid.uuid4().hex[:8]}@example.com"
    sign_up(page, app_url, email, name="Reader")
    expect(page.get_by_test_id("profile-link")).to_have_text("Reader")

    page.get_by_test_id("profile-link").click()
    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("nav-sign-in")).to_be_visible()

    _sign_in(page, app_url, email, "not the password")
    expect(page.get_by_test_id("auth-error")).to_contain_text("incorrect")
    _sign_in(page, app_url, email, USER_PASSWORD)
    expect(page.get_by_test_id("profile-link")).to_have_text("Reader")

    page.reload()
    expect(page.get_by_test_id("profile-link")).to_have_text("Reader")


def test_the_other_usual_names_of_the_account_pages_open_them(app_url: str, page: Page) -> None:
    for path, button in (("/signup", "sign-up"), ("/signin", "sign-in")):
        page.goto(f"{app_url}{path}")
        expect(page.get_by_test_id(button)).to_be_visible()
        expect(page.get_by_test_id("not-found")).to_have_count(0)


def test_chat_requires_an_account(app_url: str, page: Page) -> None:
    page.goto(f"{app_url}/chat/socrates")
    expect(page).to_have_url(f"{app_url}/login?next=/chat/socrates")


def test_a_new_account_made_on_the_way_to_a_chat_arrives_there(app_url: str, page: Page) -> None:
    page.goto(f"{app_url}/chat/socrates")
    page.get_by_role("link", name="Create an account").click()
    expect(page).to_have_url(f"{app_url}/register?next=%2Fchat%2Fsocrates")
    page.get_by_role("main").get_by_role("link", name="Sign in").click()  # the way is kept
    expect(page).to_have_url(f"{app_url}/login?next=%2Fchat%2Fsocrates")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Name").fill("Newcomer")
    page.get_by_label("Email").fill(f"newcomer-{uuid.uuid4().hex[:8]}@example.com")
    page.get_by_label("Password (10+ characters)").fill(USER_PASSWORD)
    page.get_by_test_id("sign-up").click()

    expect(page).to_have_url(f"{app_url}/chat/socrates")
    expect(page).to_have_title("Socrates · Histora")
    expect(page.get_by_label("Your message")).to_be_visible()


def test_ask_about_puts_the_question_in_the_composer_after_signing_in(
    app_url: str, page: Page
) -> None:
    email = f"asker-{uuid.uuid4().hex[:8]}@example.com"
    account = {"email": email, "password": USER_PASSWORD, "display_name": "Asker"}
    httpx.post(f"{app_url}/api/v1/auth/register", json=account, timeout=30).raise_for_status()
    page.goto(f"{app_url}/characters/socrates")
    question = page.get_by_test_id("ask-about").first
    asked = question.inner_text().strip()

    question.click()  # a visitor: signing in comes first, and then the question
    expect(page).to_have_url(f"{app_url}/login?next=/chat/socrates%3Fstarter%3D0")
    _sign_in(page, app_url, email, USER_PASSWORD, keep_url=True)

    expect(page.get_by_label("Your message")).to_have_value(asked)
    expect(page.get_by_test_id("user-message")).to_have_count(0)  # sent only by the user
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("user-message")).to_have_text(asked)
    expect(page.get_by_label("Your message")).to_have_value("")
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("assistant-message")).to_have_count(1, timeout=60_000)


def test_users_cannot_open_admin_pages_but_admins_can(app_url: str, page: Page) -> None:
    sign_up(page, app_url, f"user-{uuid.uuid4().hex[:8]}@example.com")
    page.goto(f"{app_url}/admin")
    expect(page).to_have_url(f"{app_url}/")
    expect(page.get_by_test_id("admin-heading")).to_have_count(0)

    page.get_by_test_id("profile-link").click()
    page.get_by_test_id("sign-out").click()
    _sign_in(page, app_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    expect(page.get_by_test_id("profile-link")).to_be_visible()
    page.goto(f"{app_url}/admin")
    expect(page.get_by_test_id("admin-heading")).to_be_visible()
    expect(page.get_by_text(ADMIN_EMAIL)).to_be_visible()


def test_an_api_key_made_on_the_profile_works_until_revoked(app_url: str, page: Page) -> None:
    sign_up(page, app_url, f"keys-{uuid.uuid4().hex[:8]}@example.com")
    page.get_by_test_id("profile-link").click()
    page.get_by_placeholder("Key name").fill("my script")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("new-api-key").inner_text().strip()
    assert secret.startswith("hk_")
    page.get_by_test_id("copy-api-key").click()
    expect(page.get_by_text("Copied")).to_be_visible()

    me = f"{app_url}/api/v1/auth/me"
    auth = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(me, headers=auth, timeout=30).status_code == 200
    row = page.get_by_test_id("api-key-row").filter(has_text="my script")
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("revoked")
    assert httpx.get(me, headers=auth, timeout=30).status_code == 401
