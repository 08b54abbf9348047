"""An admin gives Marcus Aurelius the Meditations; his answer about anger cites them.

Runs the real app: the real extraction, the local embedder, the ingestion worker,
hybrid retrieval and the local chat model.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.conftest import SHARED_CORPUS

pytestmark = pytest.mark.browser

MEDITATIONS = SHARED_CORPUS / "marcus-aurelius__meditations.pdf"
INGEST_TIMEOUT_MS = 240_000  # 23 pages, about 100 chunks; generous for a busy machine
REPLY_TIMEOUT_MS = 240_000  # the local model's total timeout, and then some


def _sign_in_as_admin(page: Page, app_url: str) -> None:
    page.goto(f"{app_url}/login")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_test_id("sign-in").click()
    expect(page).to_have_url(f"{app_url}/")  # signed in and sent home
    expect(page.get_by_test_id("profile-link")).to_be_visible()


def _open_knowledge_base(page: Page) -> None:
    page.get_by_test_id("nav-admin").click()
    expect(page.get_by_test_id("nav-admin-characters")).to_be_visible()
    page.get_by_test_id("nav-admin-characters").click()
    expect(page.get_by_test_id("admin-nav-characters")).to_be_visible()
    page.get_by_test_id("knowledge-base-link").filter(has_text="Marcus Aurelius").click()
    expect(page.get_by_test_id("knowledge-base-heading")).to_have_text("Marcus Aurelius")


def _upload_and_watch(page: Page) -> None:
    assert MEDITATIONS.exists(), f"test corpus missing: {MEDITATIONS}"
    page.get_by_test_id("upload-zone").locator("input[type=file]").set_input_files(MEDITATIONS)
    expect(page.get_by_test_id("upload-accepted")).to_contain_text(MEDITATIONS.name)
    row = page.get_by_test_id("document-row").filter(has_text=MEDITATIONS.name)
    expect(row).to_have_count(1)
    # Queued, read, indexed: the bar shows until the document settles, then goes.
    expect(row.get_by_test_id("document-progress")).to_be_visible(timeout=15_000)
    expect(row.get_by_test_id("document-status")).to_have_text("Ready", timeout=INGEST_TIMEOUT_MS)
    expect(row.get_by_test_id("document-progress")).to_have_count(0)
    expect(row).not_to_contain_text("Failed")


def test_admin_uploads_meditations_and_the_reply_cites_them(app_url: str, page: Page) -> None:
    _sign_in_as_admin(page, app_url)
    _open_knowledge_base(page)
    _upload_and_watch(page)

    page.goto(f"{app_url}/characters/marcus-aurelius")
    page.get_by_test_id("start-chat").click()
    page.get_by_label("Your message").fill("What should I do about anger?")
    started = time.monotonic()
    page.get_by_test_id("send").click()

    # The sources arrive before the first word, under the streaming draft.
    reply = page.get_by_test_id("assistant-message")
    draft_sources = page.get_by_test_id("draft-message").get_by_test_id("source-chip")
    try:
        expect(draft_sources.first).to_contain_text("meditations", timeout=60_000)
    except AssertionError:
        if reply.count() == 0:  # not merely a reply that finished before we looked
            raise
    expect(reply).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
    assert time.monotonic() - started < REPLY_TIMEOUT_MS / 1000
    sources = reply.get_by_test_id("sources")
    expect(sources).to_be_visible()
    chip = sources.get_by_test_id("source-chip").filter(has_text=MEDITATIONS.name).first
    expect(chip).to_have_text(re.compile(r"\[\d+\].*marcus-aurelius__meditations\.pdf, p\. \d+"))

    chip.click()
    passage = page.get_by_test_id("source-passage")
    expect(passage).to_be_visible()
    expect(passage).to_contain_text(MEDITATIONS.name)
    expect(passage).to_contain_text(re.compile(r"Page \d+"))
    assert len(passage.inner_text()) > 200, "the passage text should be shown in full"
