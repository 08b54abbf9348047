"""A visitor chats with Socrates in a real browser, on the real local model."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import sqlite3
import time
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import sign_up

pytestmark = pytest.mark.browser


def _draft_lengths(page: Page, seconds: float) -> list[int]:
    """Observe the streaming reply's length several times."""
    lengths: list[int] = []
    draft = page.get_by_test_id("draft-message")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and draft.count():
        try:
            lengths.append(len(draft.inner_text(timeout=500)))
        except Exception:  # noqa: BLE001 - the draft disappears when the reply ends
            break
        time.sleep(0.15)
    return lengths


def _kill_model_server(port: int) -> None:
    """SIGKILL the embedded llama-server that serves ``port``, as a crash would."""
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        try:
            args = (process / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # it exited meanwhile
        if Path(args[0].decode(errors="replace")).name != "llama-server" or b"--port" not in args:
            continue
        if args[args.index(b"--port") + 1] == str(port).encode():
            os.kill(int(process.name), signal.SIGKILL)
            return
    raise AssertionError(f"no llama-server serving port {port}")


def _wait_for_model_server(port: int, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"the model server on port {port} did not come back")


def test_a_model_server_killed_mid_reply_keeps_the_text_and_offers_a_retry(
    app_url: str, page: Page, local_model_port: int
) -> None:
    sign_up(page, app_url, f"crash-{uuid.uuid4().hex[:8]}@example.com")
    page.goto(f"{app_url}/chat/socrates")
    page.get_by_label("Your message").fill("Explain the good life, at great length, please.")
    page.get_by_test_id("send").click()
    draft = page.get_by_test_id("draft-message")
    expect(draft).not_to_have_text("Thinking…", timeout=60_000)
    _kill_model_server(local_model_port)

    # The page says so, keeps what had arrived, and offers to try again.
    expect(page.get_by_test_id("chat-error")).to_be_visible(timeout=60_000)
    failed = page.get_by_test_id("assistant-message")
    expect(failed).to_have_count(1)
    expect(failed.get_by_test_id("failed-note")).to_be_visible()
    partial = failed.inner_text().replace("This reply failed before it finished.", "").strip()
    assert partial, "the text that had arrived is gone"
    # Both messages are saved: the conversation opened anew shows them as they were.
    again = page.context.new_page()
    again.goto(page.url)
    expect(again.get_by_test_id("user-message")).to_have_count(1)
    expect(again.get_by_test_id("assistant-message")).to_contain_text(partial[:40])
    expect(again.get_by_test_id("failed-note")).to_be_visible()
    again.close()

    # Retry answers in place of the failed reply, and the conversation goes on.
    page.get_by_test_id("retry").click()
    expect(page.get_by_test_id("chat-error")).to_have_count(0)
    expect(page.get_by_test_id("regenerate")).to_be_visible(timeout=120_000)
    expect(page.get_by_test_id("assistant-message")).to_have_count(1)
    expect(page.get_by_test_id("failed-note")).to_have_count(0)

    # A question sent the moment the server has died again waits for the app to
    # restart it, instead of failing.
    _wait_for_model_server(local_model_port)
    _kill_model_server(local_model_port)
    page.get_by_label("Your message").fill("Thank you. And briefly: what is virtue?")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("assistant-message")).to_have_count(2, timeout=120_000)
    expect(page.get_by_test_id("regenerate")).to_be_visible(timeout=120_000)
    expect(page.get_by_test_id("failed-note")).to_have_count(0)
    expect(page.get_by_test_id("chat-error")).to_have_count(0)


def _frames_received(page: Page) -> list[str]:
    """The text of every websocket frame the page receives from now on."""
    frames: list[str] = []
    page.on("websocket", lambda socket: socket.on("framereceived", lambda f: frames.append(str(f))))
    return frames


def test_chat_streams_stops_and_regenerates(app_url: str, page: Page) -> None:
    received = _frames_received(page)
    sign_up(page, app_url, f"chat-{uuid.uuid4().hex[:8]}@example.com")
    page.goto(f"{app_url}/characters/socrates")
    expect(page).to_have_title("Socrates · Histora")  # as tabs and history list it
    page.get_by_test_id("start-chat").click()
    expect(page.get_by_test_id("starter-chip")).to_have_count(3)

    composer = page.get_by_label("Your message")
    composer.fill("Tell me, what is the good life?")
    composer.press("Enter")
    expect(page.get_by_test_id("user-message")).to_have_text("Tell me, what is the good life?")
    expect(page.get_by_test_id("draft-message")).to_be_visible()
    # While the reply comes, the composer keeps the focus but takes no typing.
    expect(composer).to_have_attribute("readonly", "")
    expect(composer).to_be_focused()
    composer.press("x")
    expect(composer).to_have_value("")
    lengths = _draft_lengths(page, seconds=20)
    growing = [b for a, b in itertools.pairwise(lengths) if b > a]
    assert len(growing) >= 2, f"reply did not visibly stream: {lengths}"
    expect(page.get_by_test_id("assistant-message")).to_have_count(1, timeout=90_000)
    expect(page.get_by_test_id("user-message")).to_have_count(1)
    expect(composer).not_to_have_attribute("readonly", "")
    expect(composer).to_be_focused()
    first_reply = page.get_by_test_id("assistant-message").inner_text()
    assert first_reply.strip()
    # The new conversation has its own address from the first send.
    expect(page).to_have_url(re.compile(r"/chat/socrates/?\?session=[0-9a-f-]{36}$"))

    second_send = len(received)
    page.get_by_label("Your message").fill("Explain it again, at great length, please.")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("stop")).to_be_visible()
    # The page set its address itself: its next question brings no router vars back.
    assert not [frame for frame in received[second_send:] if "rx_router_" in frame]
    expect(composer).to_be_focused()  # not lost with the Send button
    expect(page.get_by_test_id("draft-message")).not_to_have_text("Thinking…", timeout=30_000)
    page.get_by_test_id("stop").click()
    expect(composer).to_be_focused()  # nor with the Stop button
    expect(page.get_by_test_id("assistant-message")).to_have_count(2, timeout=30_000)
    expect(page.get_by_test_id("assistant-message").nth(1)).to_contain_text("Stopped")

    page.get_by_test_id("regenerate").click()
    expect(page.get_by_test_id("draft-message")).to_be_visible()
    expect(page.get_by_test_id("assistant-message")).to_have_count(2, timeout=90_000)
    expect(page.get_by_test_id("regenerate")).to_be_visible(timeout=90_000)
    assert "Stopped" not in page.get_by_test_id("assistant-message").nth(1).inner_text()
    expect(composer).to_be_focused()  # not lost with the Regenerate button

    # The conversation is in the sidebar and reachable by its URL.
    expect(page.get_by_test_id("session-link")).to_have_count(1)
    page.get_by_test_id("session-link").click()
    expect(page.get_by_test_id("user-message")).to_have_count(2)

    # A reload keeps the conversation on screen.
    page.reload()
    expect(page.get_by_test_id("user-message")).to_have_count(2)
    expect(page.get_by_test_id("assistant-message")).to_have_count(2)

    # Rename it from its menu.
    page.get_by_test_id("session-menu").click()
    page.get_by_test_id("session-rename").click()
    page.get_by_test_id("rename-title").fill("On the good life")
    page.get_by_test_id("confirm-rename").click()
    expect(page.get_by_test_id("session-link")).to_contain_text("On the good life")
    expect(page.get_by_test_id("rename-title")).to_have_count(0)

    # On a phone, picking a conversation closes the pop-up that lists them.
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("button", name="Conversations").click()
    # The sidebar's own list is in the page too, hidden on a phone.
    picked = page.locator("[data-testid=session-link]:visible")
    expect(picked).to_have_count(1)
    expect(picked).to_contain_text("On the good life")
    picked.click()
    expect(picked).to_have_count(0)
    expect(page.get_by_test_id("user-message")).to_have_count(2)
    # The message box keeps most of the row: buttons that do not fit beside it go on a
    # line below, none off the screen.
    box = page.get_by_label("Your message").bounding_box()
    assert box is not None and box["width"] >= 0.6 * 390, box
    for button in ("send", "regenerate"):
        place = page.get_by_test_id(button).bounding_box()
        assert place is not None and place["x"] + place["width"] <= 390, (button, place)


def test_stop_works_before_the_first_words(app_url: str, page: Page) -> None:
    """A long question keeps the local model reading for seconds before its first word;
    Stop ends the reply then, with nothing said."""
    sign_up(page, app_url, f"stop-{uuid.uuid4().hex[:8]}@example.com")
    page.goto(f"{app_url}/chat/socrates")
    composer = page.get_by_label("Your message")
    question = " ".join(f"Is virtue number {n} a kind of knowledge, or a gift?" for n in range(70))
    composer.fill(question[:3900])
    composer.press("Enter")
    expect(page.get_by_test_id("draft-message")).to_have_text("Thinking…")
    page.get_by_test_id("stop").click()
    stopped = page.get_by_test_id("assistant-message")
    expect(stopped).to_have_count(1, timeout=30_000)
    expect(stopped).to_contain_text("Stopped")
    expect(page.get_by_test_id("draft-message")).to_have_count(0)
    # Nothing of the reply came before the Stop: it ended while the model still read.
    assert stopped.inner_text().strip() == "Stopped"
    # And the conversation goes on.
    composer.fill("In one word: what is virtue?")
    composer.press("Enter")
    expect(page.get_by_test_id("assistant-message")).to_have_count(2, timeout=90_000)


def test_a_regenerate_stopped_midway_gives_the_earlier_reply_back(app_url: str, page: Page) -> None:
    sign_up(page, app_url, f"regen-{uuid.uuid4().hex[:8]}@example.com")
    page.goto(f"{app_url}/chat/socrates")
    # A long answer, so the Stop comes while the next one is still being written.
    page.get_by_label("Your message").fill(
        "Tell me at length, in many paragraphs: what is justice?"
    )
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("regenerate")).to_be_visible(timeout=120_000)
    reply = page.get_by_test_id("assistant-message")
    earlier = reply.inner_text()

    page.get_by_test_id("regenerate").click()
    draft = page.get_by_test_id("draft-message")
    expect(draft).not_to_have_text("Thinking…", timeout=60_000)  # the new one is being written
    page.get_by_test_id("stop").click()

    expect(page.get_by_text("Stopped. The earlier reply is kept.")).to_be_visible()
    expect(reply).to_have_count(1)
    assert reply.inner_text() == earlier
    page.reload()  # saved so, not only shown
    expect(reply).to_have_count(1)
    expect(page.get_by_test_id("regenerate")).to_be_visible()
    assert reply.inner_text() == earlier


def test_all_conversations_are_listed_and_archived_ones_come_back(app_url: str, page: Page) -> None:
    sign_up(page, app_url, f"lister-{uuid.uuid4().hex[:8]}@example.com")
    page.goto(f"{app_url}/conversations")
    expect(page.get_by_test_id("no-conversations")).to_be_visible()

    for character in ("socrates", "marie-curie"):
        page.goto(f"{app_url}/chat/{character}")
        page.get_by_label("Your message").fill(f"Hello, {character}!")
        page.get_by_test_id("send").click()
        expect(page.get_by_test_id("stop")).to_be_visible()
        page.get_by_test_id("stop").click()
        expect(page.get_by_test_id("assistant-message")).to_have_count(1, timeout=90_000)

    page.get_by_test_id("nav-conversations").click()
    links = page.get_by_test_id("conversation-link")
    expect(links).to_have_count(2)
    expect(links.first).to_contain_text("Marie Curie")  # most recent first
    expect(links.last).to_contain_text("Socrates")

    page.get_by_test_id("conversation-archive").last.click()
    expect(links).to_have_count(1)
    page.get_by_test_id("show-archived").click()
    expect(links).to_have_count(2)
    page.get_by_test_id("conversation-restore").click()
    expect(page.get_by_test_id("conversation-restore")).to_have_count(0)

    links.filter(has_text="Socrates").click()
    expect(page).to_have_url(re.compile(r"/chat/socrates/?\?session="))
    expect(page.get_by_test_id("user-message")).to_have_text("Hello, socrates!")


def test_a_link_to_a_conversation_that_is_not_there_says_so_and_a_new_one_can_start(
    app_url: str, page: Page
) -> None:
    sign_up(page, app_url, f"links-{uuid.uuid4().hex[:8]}@example.com")
    for session in (str(uuid.uuid4()), "not-a-conversation"):
        page.goto(f"{app_url}/chat/socrates?session={session}")
        expect(page.get_by_test_id("chat-error")).to_contain_text("No such conversation.")
        expect(page.get_by_test_id("user-message")).to_have_count(0)

    # Asking starts a new conversation, which takes over the address.
    page.get_by_label("Your message").fill("Who taught you?")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("chat-error")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/chat/socrates/?\?session=[0-9a-f-]{36}$"))
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("assistant-message")).to_have_count(1, timeout=90_000)
    page.reload()
    expect(page.get_by_test_id("user-message")).to_have_text("Who taught you?")


def test_a_document_added_before_the_first_question_starts_the_conversation(
    app_url: str, page: Page, tmp_path: Path
) -> None:
    notes = tmp_path / "symposium-notes.txt"
    notes.write_text("Notes on the Symposium: Diotima teaches Socrates about love.\n" * 20)
    received = _frames_received(page)
    sign_up(page, app_url, f"notes-{uuid.uuid4().hex[:8]}@example.com")
    page.goto(f"{app_url}/chat/socrates")
    expect(page.get_by_test_id("session-link")).to_have_count(0)

    documents = page.get_by_test_id("chat-documents")
    documents.get_by_test_id("upload-zone").locator("input[type=file]").set_input_files(notes)
    expect(documents.get_by_test_id("upload-accepted")).to_contain_text(notes.name)
    expect(documents.get_by_test_id("document-row")).to_contain_text(notes.name)
    # The upload started a conversation: it joins the sidebar, and gets its address.
    expect(page.get_by_test_id("session-link")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/chat/socrates/?\?session=[0-9a-f-]{36}$"))
    address = page.url

    # The first question goes into that conversation, not a second one; the state
    # expected the address the page gave itself, so the router is not sent again.
    asked = len(received)
    page.get_by_label("Your message").fill("What did Diotima teach you?")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("stop")).to_be_visible()
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("assistant-message")).to_have_count(1, timeout=90_000)
    assert page.url == address
    assert not [frame for frame in received[asked:] if "rx_router_" in frame]
    expect(page.get_by_test_id("session-link")).to_have_count(1)
    page.reload()
    expect(page.get_by_test_id("user-message")).to_have_text("What did Diotima teach you?")
    expect(page.get_by_test_id("chat-documents").get_by_test_id("document-row")).to_contain_text(
        notes.name
    )

    # Its delete confirmation takes the keyboard: the focus on Cancel, Escape to close.
    documents.get_by_test_id("document-delete").click()
    expect(page.get_by_role("alertdialog")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("alertdialog")).to_have_count(0)
    expect(documents.get_by_test_id("document-row")).to_have_count(1)  # nothing deleted


def test_a_long_unbroken_address_wraps_inside_its_bubble(app_url: str, page: Page) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    sign_up(page, app_url, f"wide-{uuid.uuid4().hex[:8]}@example.com")
    page.goto(f"{app_url}/chat/socrates")
    address = "https://maps.example.com/place/" + "a1b2c3d4e5" * 30
    page.get_by_label("Your message").fill(f"What do you think of this place? {address}")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("stop")).to_be_visible()
    # Listed at once, while its first reply is still being written.
    expect(page.get_by_test_id("session-link")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    stop_box = page.get_by_test_id("stop").bounding_box()
    assert stop_box is not None and stop_box["x"] + stop_box["width"] <= 1280
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("assistant-message")).to_have_count(1, timeout=90_000)
    # The composer has the focus back for the next question.
    expect(page.get_by_label("Your message")).to_be_focused()
    page.reload()
    expect(page.get_by_test_id("user-message")).to_contain_text("What do you think")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280


def _new_socrates_conversation(page: Page, app_url: str, who: str, question: str) -> None:
    """Sign up as a new user, ask Socrates ``question`` and stop the reply at once."""
    sign_up(page, app_url, f"{who}-{uuid.uuid4().hex[:8]}@example.com")
    page.goto(f"{app_url}/chat/socrates")
    page.get_by_label("Your message").fill(question)
    page.get_by_test_id("send").click()
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("assistant-message")).to_have_count(1, timeout=90_000)


def test_a_refused_send_gives_the_text_back_and_offers_no_retry(app_url: str, page: Page) -> None:
    _new_socrates_conversation(page, app_url, "refused", "Hello, Socrates!")
    expect(page.get_by_test_id("regenerate")).to_be_visible()

    too_long = "Tell me about virtue. " * 230  # 5,060 characters, over the 4,000 limit
    page.get_by_label("Your message").fill(too_long)
    page.get_by_label("Your message").press("Enter")
    expect(page.get_by_test_id("chat-error")).to_contain_text(
        "A message is limited to 4,000 characters; this one has 5,059."
    )
    # Not a failed reply: nothing to write again.
    expect(page.get_by_test_id("retry")).to_have_count(0)
    composer = page.get_by_label("Your message")
    expect(composer).to_have_value(too_long)
    expect(page.get_by_test_id("user-message")).to_have_count(1)
    # The text given back shows as text, not in a one-line slit; and once a shorter
    # question goes in its place and is sent, the emptied box is one line again.
    one_line = 80
    assert _height(composer) > 2 * one_line
    composer.fill("Tell me about virtue. " * 40)
    composer.press("Enter")
    expect(page.get_by_test_id("user-message")).to_have_count(2)
    expect(composer).to_have_value("")
    page.wait_for_function(
        f"document.querySelector('[aria-label=\"Your message\"]').offsetHeight < {one_line}"
    )


def _height(locator: Locator) -> float:
    box = locator.bounding_box()
    assert box is not None
    return float(box["height"])


def test_a_conversation_linked_under_another_figure_opens_under_its_own(
    app_url: str, page: Page
) -> None:
    _new_socrates_conversation(page, app_url, "figure", "Who was your teacher?")
    session = page.url.split("session=")[1]

    page.goto(f"{app_url}/chat/marie-curie?session={session}")
    expect(page).to_have_url(re.compile(rf"/chat/socrates/?\?session={session}$"))
    expect(page.get_by_test_id("user-message")).to_have_text("Who was your teacher?")


def test_the_conversation_menu_dialogs_keep_the_keyboard_focus(app_url: str, page: Page) -> None:
    _new_socrates_conversation(page, app_url, "keyboard", "What is courage?")
    menu, composer = page.get_by_test_id("session-menu"), page.get_by_label("Your message")

    # The dialog's own field or safe button gets the focus, not the closing menu.
    menu.click()
    page.get_by_test_id("session-rename").click()
    expect(page.get_by_test_id("rename-title")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("rename-title")).to_have_count(0)
    expect(composer).to_be_focused()

    menu.click()
    page.get_by_test_id("session-delete").click()
    expect(page.get_by_role("button", name="Cancel")).to_be_focused()
    # It names the conversation: the menu need not be the open one's.
    expect(page.get_by_test_id("delete-conversation-description")).to_have_text(
        "“What is courage?” and its messages are deleted for good."
    )
    page.keyboard.press("Escape")  # closes the confirmation, deletes nothing
    expect(page.get_by_test_id("confirm-delete")).to_have_count(0)
    expect(composer).to_be_focused()
    expect(page.get_by_test_id("session-link")).to_have_count(1)

    # A menu closed without a dialog gives the focus back to its button, on a phone too,
    # where the conversations are listed in a pop-up.
    menu.click()
    page.keyboard.press("Escape")
    expect(menu).to_be_focused()
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("button", name="Conversations").click()
    in_popup = page.locator("[data-testid=session-menu]:visible")
    in_popup.click()
    page.keyboard.press("Escape")
    expect(in_popup).to_be_focused()
    page.keyboard.press("Escape")  # and the pop-up
    page.set_viewport_size({"width": 1280, "height": 900})

    # The skip link goes past the navigation and the conversation list.
    page.get_by_test_id("skip-link").focus()
    page.keyboard.press("Enter")
    expect(composer).to_be_focused()

    # On a page that focuses nothing itself, it is the first Tab stop, shown when reached.
    page.goto(f"{app_url}/")
    skip = page.get_by_test_id("skip-link")
    expect(skip).to_have_text("Skip to main content")
    page.keyboard.press("Tab")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 20
    page.keyboard.press("Enter")
    expect(page.get_by_role("main")).to_be_focused()


def test_an_archived_conversation_opened_by_its_link_says_so_and_can_be_restored(
    app_url: str, page: Page
) -> None:
    _new_socrates_conversation(page, app_url, "archivist", "What is piety?")
    address = page.url
    page.get_by_test_id("session-menu").click()
    page.get_by_role("menuitem", name="Archive").click()
    expect(page.get_by_test_id("session-link")).to_have_count(0)
    expect(page.get_by_test_id("archived-note")).to_have_count(0)

    page.goto(address)
    expect(page.get_by_test_id("user-message")).to_have_text("What is piety?")
    expect(page.get_by_test_id("archived-note")).to_contain_text("archived")
    page.get_by_role("button", name="Restore").click()
    expect(page.get_by_test_id("archived-note")).to_have_count(0)
    expect(page.get_by_test_id("session-link")).to_contain_text("What is piety?")
    page.reload()
    expect(page.get_by_test_id("archived-note")).to_have_count(0)


def test_archiving_the_open_conversation_can_be_undone(app_url: str, page: Page) -> None:
    _new_socrates_conversation(page, app_url, "undoer", "What is temperance?")
    address = page.url
    page.get_by_test_id("session-menu").click()
    page.get_by_role("menuitem", name="Archive").click()
    expect(page.get_by_test_id("session-link")).to_have_count(0)
    expect(page.get_by_test_id("user-message")).to_have_count(0)  # a new one took its place

    page.get_by_role("button", name="Undo").click()
    expect(page).to_have_url(address)
    expect(page.get_by_test_id("user-message")).to_have_text("What is temperance?")
    expect(page.get_by_test_id("session-link")).to_contain_text("What is temperance?")
    expect(page.get_by_test_id("archived-note")).to_have_count(0)
    page.reload()  # saved, not only shown
    expect(page.get_by_test_id("session-link")).to_contain_text("What is temperance?")


def test_an_image_in_a_reply_is_a_link_and_never_fetched(
    app_url: str, app_data_dir: Path, page: Page
) -> None:
    _new_socrates_conversation(page, app_url, "images", "Show me the agora.")
    session = uuid.UUID(page.url.split("session=")[1])
    # What a reply steered by a planted document could say.
    leak = "http://127.0.0.1:9/pixel.png?said=the+user+asked+about+the+agora"
    with sqlite3.connect(app_data_dir / "app.db") as database:
        database.execute(
            "UPDATE chat_messages SET content = ? WHERE session_id = ? AND role = 'assistant'",
            (
                f"Behold: ![The agora]({leak}), ![](javascript:alert(1)) "
                "and [a map](http://127.0.0.1:9/map)\n\n> Know thyself.",
                session.hex,
            ),
        )
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    page.reload()
    reply = page.get_by_test_id("assistant-message")
    expect(reply).to_contain_text("Behold:")
    expect(reply.locator("img")).to_have_count(0)
    image = reply.get_by_test_id("reply-image-link")
    expect(image).to_have_text("The agora")
    expect(image).to_have_attribute("href", leak)
    expect(image).to_have_attribute("target", "_blank")
    expect(reply.get_by_role("link", name="a map")).to_have_attribute(
        "href", "http://127.0.0.1:9/map"
    )
    # An address react-markdown refuses leaves the text, and no link to this page.
    expect(reply).to_contain_text("Image and a map")
    expect(reply.get_by_role("link")).to_have_count(2)
    assert not [url for url in requested if "127.0.0.1:9/" in url]
    quote = reply.locator("blockquote")  # a quoted passage stands apart from the reply
    expect(quote).to_have_text("Know thyself.")
    expect(quote).to_have_css("border-left-style", "solid")
    expect(quote).to_have_css("font-style", "italic")


def test_a_new_conversation_page_keeps_its_address_until_a_question_starts_one(
    app_url: str, page: Page
) -> None:
    """The page's state from before a reload holds the last conversation while the page
    hydrates; the address bar must not take it on a page opened for a new one."""
    sign_up(page, app_url, f"address-{uuid.uuid4().hex[:8]}@example.com")
    page.goto(f"{app_url}/chat/socrates")
    page.get_by_label("Your message").fill("What is courage?")
    page.get_by_test_id("send").click()
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("assistant-message")).to_have_count(1, timeout=90_000)
    expect(page).to_have_url(re.compile(r"\?session=[0-9a-f-]{36}$"))
    first = page.url.split("session=")[1]

    for figure in ("socrates", "plato"):
        page.goto(f"{app_url}/chat/{figure}")
        expect(page.get_by_test_id("starter-chip").first).to_be_visible()
        page.wait_for_timeout(1000)  # long after hydration
        assert page.url.rstrip("/").endswith(f"/chat/{figure}"), page.url

    page.get_by_label("Your message").fill("What is a dialogue?")
    page.get_by_test_id("send").click()
    page.get_by_test_id("stop").click()
    expect(page).to_have_url(re.compile(r"/chat/plato/?\?session=[0-9a-f-]{36}$"))
    assert page.url.split("session=")[1] != first


def test_a_reply_cut_off_at_the_length_limit_says_so_and_continue_asks_for_the_rest(
    app_url: str, app_data_dir: Path, page: Page
) -> None:
    _new_socrates_conversation(page, app_url, "cut", "Tell me of the cave.")
    expect(page.get_by_test_id("continue")).to_have_count(0)  # stopped, not cut off
    session = uuid.UUID(page.url.split("session=")[1])
    # As the model's length limit leaves a reply (the page shows what was saved).
    with sqlite3.connect(app_data_dir / "app.db") as database:
        database.execute(
            "UPDATE chat_messages SET content = ?, status = 'complete', cut_short = 1 "
            "WHERE session_id = ? AND role = 'assistant'",
            ("Imagine prisoners chained in a cave, who see only", session.hex),
        )
    page.reload()
    reply = page.get_by_test_id("assistant-message")
    expect(reply.get_by_test_id("cut-short-note")).to_be_visible()
    page.get_by_test_id("continue").click()

    expect(page.get_by_test_id("user-message").last).to_have_text("Please go on.")
    expect(page.get_by_test_id("draft-message")).to_be_visible()
    page.get_by_test_id("stop").click()
    expect(reply).to_have_count(2, timeout=90_000)
    # The next reply was stopped, not cut off: nothing more to continue.
    expect(reply.last.get_by_test_id("stopped-note")).to_be_visible()
    expect(page.get_by_test_id("continue")).to_have_count(0)
    expect(reply.first.get_by_test_id("cut-short-note")).to_be_visible()
