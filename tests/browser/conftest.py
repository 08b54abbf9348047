"""Runs the real app (production build, one port) and a headless Chromium."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("HISTORA_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_SECONDS = 300
ADMIN_EMAIL = "admin@histora.test"
ADMIN_PASSWORD = "keys to the archive 42"
USER_PASSWORD = "a user password 42"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app exited early:\n{log_path.read_text()[-4000:]}")
        try:
            api_up = httpx.get(f"{url}/api/v1/characters?limit=1", timeout=2).status_code
            if api_up == 200 and httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"app not ready in time:\n{log_path.read_text()[-4000:]}")


@contextlib.contextmanager
def running_app(data_dir: Path, settings: dict[str, str]) -> Iterator[str]:
    """The app on a free port with these settings over the defaults below; yields its URL."""
    port = _free_port()
    env = {
        **os.environ,
        "HISTORA_DATA_DIR": str(data_dir),
        "HISTORA_DATABASE_URL": f"sqlite:///{data_dir / 'app.db'}",
        # The real embedded model server, on a port of its own.
        "HISTORA_LOCAL_MODEL_PORT": str(_free_port()),
        "HISTORA_MODEL_PROVIDER": "local",
        "HISTORA_SECRET_KEY": "browser-test-secret-" + "x" * 32,
        "HISTORA_ADMIN_EMAIL": ADMIN_EMAIL,
        "HISTORA_ADMIN_PASSWORD": ADMIN_PASSWORD,
        # The websocket is refused from origins not listed here, as in production.
        "HISTORA_CORS_ORIGINS": f"http://127.0.0.1:{port}",
        # Every test signs up, signs in and reloads from 127.0.0.1, far more often in a
        # minute than people do; the limits themselves are tested without a browser.
        "HISTORA_REGISTER_RATE_LIMIT": "200/minute",
        "HISTORA_LOGIN_RATE_LIMIT": "200/minute",
        "HISTORA_REFRESH_RATE_LIMIT": "200/minute",
        **settings,
    }
    log_path = data_dir / "app.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                "reflex", "run", "--env", "prod",
                "--frontend-port", str(port), "--backend-port", str(port),
                "--backend-host", "127.0.0.1",
            ],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process, log_path)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited already
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def local_model_port() -> int:
    """The port of the shared app's embedded model server (a test may kill it)."""
    return _free_port()


@pytest.fixture(scope="session")
def app_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared app's data folder (its SQLite database is ``app.db`` in it)."""
    return tmp_path_factory.mktemp("browser-data")


@pytest.fixture(scope="session")
def app_url(app_data_dir: Path, local_model_port: int) -> Iterator[str]:
    """The app on its embedded defaults: local accounts, local model."""
    settings = {"HISTORA_LOCAL_MODEL_PORT": str(local_model_port)}
    with running_app(app_data_dir, settings) as url:
        yield url


# Module scope: sync Playwright keeps an event loop running in this thread while it
# is open, which would stop the async tests that run after the browser tests.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run ./scripts/setup.sh --dev")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def sign_up(page: Page, app_url: str, email: str, name: str = "Browser User") -> None:
    page.goto(f"{app_url}/register")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password (10+ characters)").fill(USER_PASSWORD)
    page.get_by_test_id("sign-up").click()
    page.get_by_test_id("profile-link").wait_for()


@pytest.fixture
def page(browser: Browser, tmp_path: Path) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    page.screenshot(path=str(tmp_path / "last.png"))
    context.close()
