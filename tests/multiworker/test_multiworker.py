"""The app scaled out: several workers, state in Redis, one of each single-instance part.

One app serves the whole module (starting it is the expensive part); the tests run in
file order and the last one shuts it down.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
from sqlalchemy import create_engine, text

from histora.db import sync_database_url
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.multiworker import procfs
from tests.multiworker.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    LOGIN_LIMIT,
    WORKERS,
    RunningApp,
    stop_app,
)

pytestmark = pytest.mark.multiworker

USER_PASSWORD = "a user password 42"
RATE_LIMIT_KEYS = "histora-limits*"  # services.rate_limits.DEFAULT_KEY_PREFIX
SOCKET_RECORD_KEY = "token_manager_socket_record_{}"  # reflex.utils.token_manager
MAX_RELOADS = 12
UPLOADS = 4
MAX_UPLOADS = 12
INGEST_TIMEOUT_SECONDS = 120
TAKEOVER_TIMEOUT_SECONDS = 90  # new workers run the startup steps, old ones drain


def _on_every_worker(
    app: RunningApp, method: str, path: str, **kwargs: Any
) -> dict[int, list[httpx.Response]]:
    """The same request on new connections until every worker has answered it."""
    workers = set(app.worker_pids())
    answers: dict[int, list[httpx.Response]] = {}
    for _ in range(WORKERS * 15):
        response, worker = app.request_on_new_connection(method, path, **kwargs)
        assert response.status_code == 200, response.text
        assert worker is not None
        answers.setdefault(worker, []).append(response)
        if set(answers) == workers:
            return answers
    raise AssertionError(f"workers {workers - set(answers)} never got a connection")


def _found_documents(answers: dict[int, list[httpx.Response]]) -> dict[int, set[str]]:
    """Per worker, the names of the documents its searches returned."""
    return {
        worker: {passage["document_name"] for response in responses for passage in response.json()}
        for worker, responses in answers.items()
    }


def _upload(
    app: RunningApp, headers: dict[str, str], name: str, content: str
) -> tuple[str, int | None]:
    """Upload a TXT source to Socrates; (document id, the worker that accepted it)."""
    response, worker = app.request_on_new_connection(
        "POST",
        "/api/v1/characters/socrates/documents",
        headers=headers,
        files={"file": (name, content.encode(), "text/plain")},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"]), worker


def _wait_until_ingested(app: RunningApp, headers: dict[str, str], ids: set[str]) -> None:
    """Poll each document (on new connections, so any worker answers) until it settles."""
    pending = set(ids)
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + INGEST_TIMEOUT_SECONDS
    while pending and time.monotonic() < deadline:
        for document_id in sorted(pending):
            response, _ = app.request_on_new_connection(
                "GET", f"/api/v1/documents/{document_id}", headers=headers
            )
            assert response.status_code == 200, response.text
            document = response.json()
            statuses[document_id] = document["status"]
            if document["status"] in ("ready", "failed"):
                pending.discard(document_id)
                assert document["status"] == "failed" or document["chunk_count"] >= 1
        time.sleep(0.5)
    assert statuses == dict.fromkeys(ids, "ready"), statuses


def _reset_rate_limits(app: RunningApp) -> None:
    """Forget the app's rate-limit counts (every client here is 127.0.0.1)."""
    keys = list(app.redis.scan_iter(match=RATE_LIMIT_KEYS))
    if keys:
        app.redis.delete(*keys)


def test_requests_land_on_several_worker_processes(app: RunningApp) -> None:
    workers = app.worker_pids()
    assert len(workers) == WORKERS, procfs.descendants(app.pid)

    served: Counter[int | None] = Counter()
    for _ in range(30):
        response, worker = app.request_on_new_connection("GET", "/api/v1/health")
        assert response.status_code == 200
        served[worker] += 1

    assert None not in served, f"a connection no worker accepted: {served}"
    assert set(served) <= set(workers)
    assert len(served) >= 2, f"one worker served every connection: {served}"


def _socket_record(app: RunningApp, token: str) -> tuple[str, str] | None:
    """(worker instance id, socket id) of the websocket Reflex linked to a tab's token."""
    raw = app.redis.get(SOCKET_RECORD_KEY.format(token))
    if not isinstance(raw, bytes):
        return None
    record = pickle.loads(raw)  # our own Redis database, written by the app
    return record.instance_id, record.sid


def _next_socket_record(app: RunningApp, token: str, previous_sid: str) -> tuple[str, str]:
    """The record of the tab's new websocket (a reload opens one), once Reflex stored it."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        record = _socket_record(app, token)
        if record is not None and record[1] != previous_sid:
            return record
        time.sleep(0.1)
    raise AssertionError(f"no new websocket record for {token} in Redis")


def _tab_token(page: Page) -> str:
    token = page.evaluate("window.sessionStorage.getItem('token')")
    assert isinstance(token, str) and token
    return token


def _refresh_token(page: Page) -> str | None:
    value = page.evaluate("window.localStorage.getItem('histora_refresh_token')")
    return value if isinstance(value, str) else None


def _expect_signed_in(page: Page, name: str) -> None:
    expect(page.get_by_test_id("profile-link")).to_have_text(name)


def _sign_in(page: Page, app: RunningApp, email: str) -> None:
    page.goto(f"{app.url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(USER_PASSWORD)
    page.get_by_test_id("sign-in").click()


def _chat_once(page: Page, app: RunningApp) -> None:
    page.goto(f"{app.url}/characters/socrates")
    page.get_by_test_id("start-chat").click()
    page.get_by_label("Your message").fill("Tell me, what is courage?")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("draft-message")).to_be_visible()
    expect(page.get_by_test_id("assistant-message")).to_have_count(1, timeout=170_000)
    expect(page.get_by_test_id("draft-message")).to_have_count(0)
    assert page.get_by_test_id("assistant-message").inner_text().strip()
    expect(page.get_by_test_id("failed-note")).to_have_count(0)


def _reopen(page: Page, app: RunningApp, token: str) -> None:
    """Leave the page, then come back in the same tab (its session storage, so its
    Reflex token, stays): the new websocket may land on any worker.

    Not a plain reload: Reflex takes a token whose previous websocket is still recorded
    in Redis for a duplicated tab, and gives the new one a fresh token (a fresh state).
    A reload that reconnects before the old socket's worker has dropped the record gets
    one; waiting for the drop keeps each reconnection on the state this test follows.
    """
    url = page.url
    page.goto("about:blank")
    deadline = time.monotonic() + 15
    while _socket_record(app, token) is not None:
        assert time.monotonic() < deadline, f"the closed websocket of {token} stayed recorded"
        time.sleep(0.05)
    page.goto(url)


def _reload_until_two_workers(page: Page, app: RunningApp, name: str) -> set[str]:
    """Reopen the page; each time a new websocket, which any worker may accept."""
    token = _tab_token(page)
    record = _socket_record(app, token)
    assert record is not None, "Reflex keeps no socket record in Redis: is it using Redis?"
    instances = {record[0]}
    for reload in range(MAX_RELOADS):
        _reopen(page, app, token)
        _expect_signed_in(page, name)
        assert _tab_token(page) == token  # the same tab, so the same Reflex state
        record = _next_socket_record(app, token, previous_sid=record[1])
        instances.add(record[0])
        if reload >= 2 and len(instances) >= 2:
            break
    return instances


def _run_browser_checks(context: BrowserContext, app: RunningApp, email: str, name: str) -> None:
    page = context.new_page()
    _sign_in(page, app, email)
    _expect_signed_in(page, name)
    refresh_token = _refresh_token(page)
    assert refresh_token

    instances = _reload_until_two_workers(page, app, name)
    assert len(instances) >= 2, "every reload's websocket landed on the same worker"
    assert len(instances) <= WORKERS
    # Each worker found the signed-in state in Redis: none had to rebuild it from the
    # stored refresh token (that would have rotated it).
    assert _refresh_token(page) == refresh_token
    state_keys = [key.decode() for key in app.redis.scan_iter(match=f"{_tab_token(page)}_*")]
    assert any("session_state" in key for key in state_keys), state_keys

    # New tabs start with no state of their own and restore the session.
    tabs = [context.new_page() for _ in range(3)]
    for tab in tabs:
        tab.set_default_timeout(30_000)
        tab.goto(f"{app.url}/profile")
        _expect_signed_in(tab, name)
        assert tab.url.rstrip("/") == f"{app.url}/profile"  # not sent to the sign-in page
    for open_page in [page, *tabs]:
        open_page.reload()
        _expect_signed_in(open_page, name)

    # A reply streams to completion from the local model while several workers serve.
    _chat_once(tabs[0], app)


def test_browser_session_lives_in_redis_across_workers(app: RunningApp) -> None:
    email, name = f"tabs-{uuid.uuid4().hex[:8]}@example.com", "Many Tabs"
    registered = httpx.post(
        f"{app.url}/api/v1/auth/register",
        json={"email": email, "password": USER_PASSWORD, "display_name": name},
        timeout=30,
    )
    assert registered.status_code == 201, registered.text
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run ./scripts/setup.sh --dev")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(30_000)
        try:
            _run_browser_checks(context, app, email, name)
        finally:
            context.close()
            browser.close()


def test_login_rate_limit_is_shared_by_all_workers(app: RunningApp) -> None:
    _reset_rate_limits(app)
    email = f"target-{uuid.uuid4().hex[:8]}@example.com"
    statuses: list[int] = []
    workers: list[int | None] = []
    refused: httpx.Response | None = None
    try:
        for _ in range(LOGIN_LIMIT + 1):
            response, worker = app.request_on_new_connection(
                "POST", "/api/v1/auth/login", json={"email": email, "password": "wrong guess 12"}
            )
            statuses.append(response.status_code)
            workers.append(worker)
            refused = response
    finally:
        _reset_rate_limits(app)  # the address is 127.0.0.1 for every later test too

    assert statuses == [401] * LOGIN_LIMIT + [429], statuses
    assert refused is not None
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Counted per worker, no worker would have reached the limit: the guesses were spread.
    assert None not in workers
    assert len(set(workers)) >= 2, f"every attempt went to one worker: {workers}"


def _admin_headers(app: RunningApp) -> dict[str, str]:
    response = httpx.post(
        f"{app.url}/api/v1/auth/login",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _model_servers(app: RunningApp) -> list[int]:
    """The app's llama-server processes."""
    descendants = procfs.descendants(app.pid)
    return [pid for pid in descendants if procfs.program_name(pid) == "llama-server"]


def _chroma_servers(app: RunningApp) -> list[int]:
    """The app's `chroma run` processes (a Python script: the interpreter runs `chroma`)."""

    def is_chroma(args: list[str]) -> bool:
        return len(args) > 1 and Path(args[1]).name == "chroma" and "run" in args

    return [pid for pid in procfs.descendants(app.pid) if is_chroma(procfs.command_line(pid))]


def _single_instance_pids(app: RunningApp) -> tuple[int, int]:
    """(the llama-server, the ingesting worker), checking each exists exactly once.

    So does the managed Chroma server that every worker's vector store talks to.
    """
    workers = app.worker_pids()
    servers = _model_servers(app)
    assert len(servers) == 1, servers
    assert procfs.processes_with_argument("--port", str(app.model_port)) == servers
    model_holders = procfs.flock_holders(app.data_dir / "local-model.lock")
    assert model_holders <= set(workers) and len(model_holders) == 1, model_holders
    assert procfs.child_pids(model_holders.pop()) == servers
    chroma = _chroma_servers(app)
    assert len(chroma) == 1, chroma
    assert procfs.processes_with_argument("run", "--port", str(app.chroma_port)) == chroma
    assert str(app.data_dir / "chroma") in procfs.command_line(chroma[0])
    chroma_holders = procfs.flock_holders(app.data_dir / "local-chroma.lock")
    assert chroma_holders <= set(workers) and len(chroma_holders) == 1, chroma_holders
    assert chroma[0] in procfs.child_pids(chroma_holders.pop())
    assert app.log().count('"event": "local_chroma.managed_elsewhere"') == WORKERS - 1
    ingest_holders = procfs.flock_holders(app.data_dir / "ingest-worker.lock")
    assert ingest_holders <= set(workers) and len(ingest_holders) == 1, ingest_holders
    assert app.log().count('"event": "ingest.worker_elsewhere"') == WORKERS - 1
    return servers[0], ingest_holders.pop()


def test_one_model_server_and_one_ingester_serve_every_worker(app: RunningApp) -> None:
    _, ingester = _single_instance_pids(app)
    headers = _admin_headers(app)

    accepted_by: dict[str, int | None] = {}
    for number in range(MAX_UPLOADS):
        content = f"Note {number}: the agora of Athens held a market every morning.\n" * 20
        document_id, worker = _upload(app, headers, f"agora-{number}.txt", content)
        accepted_by[document_id] = worker
        if len(accepted_by) >= UPLOADS and any(w != ingester for w in accepted_by.values()):
            break
    assert None not in accepted_by.values()
    assert any(worker != ingester for worker in accepted_by.values()), (
        f"every upload went to the ingesting worker {ingester}: {accepted_by}"
    )

    # Uploads accepted by any worker are ingested by the one that holds the lock.
    _wait_until_ingested(app, headers, set(accepted_by))
    # And every worker's search finds them.
    answers = _on_every_worker(
        app, "GET", "/api/v1/characters/socrates/search?q=agora+market", headers=headers
    )
    found = _found_documents(answers)
    assert all(
        names and names <= {f"agora-{n}.txt" for n in range(MAX_UPLOADS)}
        for names in found.values()
    ), found

    # Still exactly one of each after the work.
    _single_instance_pids(app)


def test_every_worker_searches_vectors_added_after_it_opened_them(app: RunningApp) -> None:
    _, ingester = _single_instance_pids(app)
    headers = _admin_headers(app)
    # Every worker has opened the character's vectors (the previous test's uploads).
    _on_every_worker(
        app, "GET", "/api/v1/characters/socrates/search?q=agora+market", headers=headers
    )
    trireme = "The trireme was rowed by one hundred and seventy oarsmen in three banks.\n" * 5
    document_id, _ = _upload(app, headers, "ships.txt", trireme)
    _wait_until_ingested(app, headers, {document_id})

    # Worded apart from the text, below the keyword search's coverage floor: only the
    # vector search can find it.
    found = _found_documents(
        _on_every_worker(
            app,
            "GET",
            "/api/v1/characters/socrates/search?q=galley+with+three+rows+of+oars",
            headers=headers,
        )
    )
    # Every worker asks the one Chroma server, so none keeps a stale view of the path.
    assert all("ships.txt" in names for names in found.values()), (ingester, found)


def _start_long_reply(app: RunningApp, headers: dict[str, str]) -> tuple[httpx.Client, str]:
    """A REST reply streaming when this returns: (its open client, the session's id)."""
    client = httpx.Client(base_url=f"{app.url}/api/v1", headers=headers, timeout=120)
    created = client.post("/chat/sessions", json={"character_id": "socrates"})
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    question = "Tell me at great length, step by step, how you examine a man's beliefs."
    request = client.build_request(
        "POST", f"/chat/sessions/{session_id}/messages", json={"content": question}
    )
    response = client.send(request, stream=True)
    assert response.status_code == 200, response.read()
    for line in response.iter_lines():
        if line == "event: delta":
            return client, session_id
    raise AssertionError("the reply ended before its first token")


def _saved_messages(database_url: str, session_id: str) -> list[tuple[str, str, str]]:
    engine = create_engine(sync_database_url(database_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT role, status, content FROM chat_messages "
                    "WHERE session_id = :id ORDER BY created_at"
                ),
                {"id": uuid.UUID(session_id)},
            )
            return [(row.role, row.status, row.content) for row in rows]
    finally:
        engine.dispose()


def _lock_holders(app: RunningApp) -> dict[str, set[int]]:
    return {
        name: procfs.flock_holders(app.data_dir / name)
        for name in ("local-model.lock", "local-chroma.lock", "ingest-worker.lock")
    }


def test_reloaded_workers_take_over_the_servers_and_ingestion(app: RunningApp) -> None:
    """On a reload (SIGHUP) gunicorn starts new workers, then stops the old ones: what
    the old ones ran once for the whole machine (the model server, Chroma, the ingestion
    loop) was locked when the new ones started, and must go on in one of them."""
    model_server, _ = _single_instance_pids(app)
    old_workers = set(app.worker_pids())
    (master,) = app.master_pids()
    # Another client's long reply keeps the model server busy, so the old worker that
    # runs it holds its lock for a while (it lets replies finish, up to 8 s). Whether a
    # new worker finds a lock free when it starts or takes it over later depends on
    # timing; either way exactly one new worker must run each part afterwards.
    busy = httpx.Client(base_url=f"http://127.0.0.1:{app.model_port}", timeout=60)
    request = busy.build_request(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "smollm2",
            "messages": [{"role": "user", "content": "Tell a very long story."}],
            "max_tokens": 4000,
            "stream": True,
        },
    )
    reply = busy.send(request, stream=True)
    next(reply.iter_lines())
    os.kill(master, signal.SIGHUP)

    deadline = time.monotonic() + TAKEOVER_TIMEOUT_SECONDS
    holders: dict[str, set[int]] = {}
    while time.monotonic() < deadline:
        workers = set(app.worker_pids())
        holders = _lock_holders(app)
        servers = _model_servers(app)
        healthy = all(
            _answers(url)
            for url in (
                f"http://127.0.0.1:{app.model_port}/health",
                f"http://127.0.0.1:{app.chroma_port}/api/v2/heartbeat",
            )
        )
        if (
            not workers & old_workers
            and len(workers) == WORKERS
            and all(len(pids) == 1 and pids <= workers for pids in holders.values())
            and len(servers) == 1
            and model_server not in servers
            and healthy
        ):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"nothing took over: {holders}\n{app.log_tail()}")
    busy.close()
    assert servers[0] in procfs.child_pids(holders["local-model.lock"].pop())

    # Everything works again: uploads are ingested, and a reply comes from the model.
    headers = _admin_headers(app)
    content = "The lyceum stood outside the walls of Athens, by a grove.\n" * 20
    document_id, _ = _upload(app, headers, "lyceum.txt", content)
    _wait_until_ingested(app, headers, {document_id})
    session = httpx.post(
        f"{app.url}/api/v1/chat/sessions",
        headers=headers,
        json={"character_id": "socrates"},
        timeout=30,
    )
    assert session.status_code == 201, session.text
    sent = httpx.post(
        f"{app.url}/api/v1/chat/sessions/{session.json()['id']}/messages",
        headers=headers,
        json={"content": "Where did Aristotle teach?", "stream": False},
        timeout=120,
    )
    assert sent.status_code == 201, sent.text
    assert sent.json()["reply"]["status"] == "complete", sent.text


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_stopping_the_app_leaves_no_process_behind(app: RunningApp, postgres_url: str) -> None:
    started = procfs.descendants(app.pid)
    workers = app.worker_pids()
    assert len(workers) == WORKERS
    assert any(procfs.program_name(pid) == "llama-server" for pid in started)
    assert _chroma_servers(app)
    client, session_id = _start_long_reply(app, _admin_headers(app))

    try:
        exit_code = stop_app(app)
    finally:
        client.close()

    assert exit_code == 0, f"the app did not stop cleanly ({exit_code}):\n{app.log_tail()}"
    # The reply in flight was saved, finished or cut short, not left half-written. (The
    # model server may stop before the worker streaming from it: then it failed.)
    (question, reply) = _saved_messages(postgres_url, session_id)
    assert question[:2] == ("user", "complete")
    assert reply[0] == "assistant" and reply[1] in ("complete", "stopped", "failed"), reply
    assert reply[2], "the partial reply was kept"
    assert [pid for pid in started if procfs.is_running(pid)] == []
    assert procfs.processes_with_argument("--port", str(app.model_port)) == []
    assert procfs.processes_with_argument("--port", str(app.chroma_port)) == []
    assert '"event": "local_model.stopped"' in app.log()
    assert '"event": "local_chroma.stopped"' in app.log()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", app.port), timeout=2):
        pass
