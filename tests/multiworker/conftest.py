"""Runs the real app as production runs it when scaled out: several Reflex workers,
state in Redis, PostgreSQL, the embedded local model server, the managed Chroma server
and the ingestion worker.

Needs HISTORA_TEST_REDIS_URL and HISTORA_TEST_DATABASE_URL (CI sets both through
.ci/run). Without them the tests skip; with them set but unreachable they fail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from histora.db import sync_database_url
from tests.multiworker import procfs
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
LOGIN_LIMIT = 10  # HISTORA_LOGIN_RATE_LIMIT for the app, per minute
ADMIN_EMAIL = "admin@histora.test"
ADMIN_PASSWORD = "keys to the archive 42"
START_TIMEOUT_SECONDS = 300
STOP_TIMEOUT_SECONDS = 30
# Redis has no key prefix for Reflex state, so the app gets a database index of its own,
# claimed with this key; DB 15 is left to tests/services/test_rate_limits.py.
REDIS_CLAIM_KEY = "histora-multiworker-claim"
REDIS_CANDIDATE_DBS = range(1, 15)


def _required_urls() -> tuple[str, str]:
    redis_url = os.environ.get("HISTORA_TEST_REDIS_URL")
    database_url = os.environ.get("HISTORA_TEST_DATABASE_URL")
    missing = [
        name
        for name, value in (
            ("HISTORA_TEST_REDIS_URL", redis_url),
            ("HISTORA_TEST_DATABASE_URL", database_url),
        )
        if not value
    ]
    if missing or not redis_url or not database_url:
        pytest.skip(f"multi-worker tests need {' and '.join(missing)} (CI sets them: .ci/run)")
    return redis_url, database_url


def _with_db_index(url: str, index: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{index}"))


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A Redis database index no one else uses, claimed for this run and flushed after it."""
    base_url, _ = _required_urls()
    try:
        redis.Redis.from_url(base_url, socket_timeout=5).ping()
    except redis.RedisError as exc:
        pytest.fail(f"HISTORA_TEST_REDIS_URL={base_url} is set but unreachable: {exc!r}")
    run_id = uuid.uuid4().hex
    for index in REDIS_CANDIDATE_DBS:
        url = _with_db_index(base_url, index)
        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            if client.dbsize() or not client.set(REDIS_CLAIM_KEY, run_id, nx=True, ex=3600):
                continue
        except redis.ResponseError:  # fewer databases configured than we tried
            break
        try:
            yield url
        finally:
            client.flushdb()
            client.close()
        return
    pytest.fail(f"no empty Redis database index among {list(REDIS_CANDIDATE_DBS)} at {base_url}")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the app (the shape production runs), dropped after."""
    _, base_url = _required_urls()
    name = f"histora_mw_{uuid.uuid4().hex[:10]}"
    admin = create_sync_engine(sync_database_url(base_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except SQLAlchemyError as exc:
        admin.dispose()
        pytest.fail(f"HISTORA_TEST_DATABASE_URL={base_url} is set but unusable: {exc!r}")
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _is_gunicorn(pid: int) -> bool:
    return any("gunicorn" in arg for arg in procfs.command_line(pid))


@dataclass
class RunningApp:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    redis: redis.Redis
    model_port: int
    chroma_port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def master_pids(self) -> list[int]:
        """The gunicorn master that the supervisor (`reflex run`) starts."""
        return [pid for pid in procfs.child_pids(self.pid) if _is_gunicorn(pid)]

    def worker_pids(self) -> list[int]:
        """The backend worker processes: the gunicorn master's children, leaving out the
        servers a worker starts."""
        return [
            worker
            for master in self.master_pids()
            for worker in procfs.child_pids(master)
            if _is_gunicorn(worker)
        ]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self) -> str:
        return self.log()[-4000:]

    def serving_worker(self, response: httpx.Response) -> int | None:
        """The worker that accepted ``response``'s connection (while it is still open)."""
        stream = response.extensions["network_stream"]
        client_port = stream.get_extra_info("client_addr")[1]
        return procfs.connection_owner(
            self.worker_pids(), server_port=self.port, client_port=client_port
        )

    def request_on_new_connection(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[httpx.Response, int | None]:
        """One request on a connection of its own, so the kernel may give it to any worker."""
        with httpx.Client(base_url=self.url, timeout=30) as client:
            response = client.request(method, path, **kwargs)
            return response, self.serving_worker(response)


def _wait_until_ready(app: RunningApp) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            raise RuntimeError(f"app exited early:\n{app.log_tail()}")
        # Every worker has run its lifespan, and the one model and Chroma servers answer.
        if app.log().count('"event": "histora.started"') >= WORKERS:
            try:
                api = httpx.get(f"{app.url}/api/v1/characters?limit=1", timeout=2)
                page = httpx.get(app.url, timeout=2)
                model = httpx.get(f"http://127.0.0.1:{app.model_port}/health", timeout=2)
                chroma = httpx.get(
                    f"http://127.0.0.1:{app.chroma_port}/api/v2/heartbeat", timeout=2
                )
                statuses = {r.status_code for r in (api, page, model, chroma)}
                if statuses == {200}:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    raise RuntimeError(f"app not ready in time:\n{app.log_tail()}")


def stop_app(app: RunningApp, sig: signal.Signals = signal.SIGTERM) -> int | None:
    """Signal the supervisor alone (as `docker stop` does) and wait; its exit code."""
    if app.process.poll() is None:
        app.process.send_signal(sig)
    try:
        return app.process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return None


@pytest.fixture(scope="module")
def app(
    redis_url: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApp]:
    data_dir = tmp_path_factory.mktemp("multiworker-data")
    port, model_port, chroma_port = free_port(), free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        # Only HISTORA_* settings configure the app: its rxconfig must pass them on.
        if key not in ("REFLEX_REDIS_URL", "REFLEX_DB_URL", "REFLEX_ASYNC_DB_URL")
        and not key.startswith(("HISTORA_CHROMA", "HISTORA_OPENAI", "GRANIAN_", "GUNICORN_"))
    }
    env.update(
        {
            "HISTORA_ENV": "production",
            # The readiness check reads the JSON log lines.
            "HISTORA_LOG_JSON": "true",
            "HISTORA_LOG_LEVEL": "INFO",
            "HISTORA_AUTH_MODE": "local",
            "HISTORA_EMBEDDER": "local",
            "HISTORA_SEED_ON_START": "true",
            "HISTORA_DATA_DIR": str(data_dir),
            # A frontend build of its own: the build holds the backend's port, and the
            # browser tests' app may still be serving the shared .web.
            "REFLEX_WEB_WORKDIR": str(data_dir / "web"),
            "REFLEX_STATES_WORKDIR": str(data_dir / "states"),
            "HISTORA_DATABASE_URL": postgres_url,
            "HISTORA_REDIS_URL": redis_url,
            "HISTORA_SECRET_KEY": "multiworker-test-secret-" + "x" * 32,
            "HISTORA_ADMIN_EMAIL": ADMIN_EMAIL,
            "HISTORA_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "HISTORA_CORS_ORIGINS": f"http://127.0.0.1:{port}",
            "HISTORA_LOGIN_RATE_LIMIT": f"{LOGIN_LIMIT}/minute",
            # The real embedded model server, started by whichever worker takes its lock.
            "HISTORA_MODEL_PROVIDER": "local",
            "HISTORA_LOCAL_MODEL_AUTOSTART": "true",
            "HISTORA_LOCAL_MODEL_PORT": str(model_port),
            # Two busy cores shared with the workers, Chromium and other test runs: one
            # thread decodes far faster than two contending ones (SETUP-NOTES), and the
            # reply gets time to finish even so.
            "HISTORA_LOCAL_MODEL_THREADS": "1",
            "HISTORA_MODEL_TIMEOUT_SECONDS": "150",
            # No HISTORA_CHROMA_URL (filtered out above): with Redis set, the app runs its
            # own Chroma server over the data directory's path, on this loopback port.
            "HISTORA_CHROMA_LOCAL_PORT": str(chroma_port),
            # The app's worker count with Redis is 2 x cores + 1 (gunicorn.conf.py); fix it.
            "WEB_CONCURRENCY": str(WORKERS),
        }
    )
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
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    running = RunningApp(
        url=f"http://127.0.0.1:{port}",
        port=port,
        process=process,
        data_dir=data_dir,
        log_path=log_path,
        redis=client,
        model_port=model_port,
        chroma_port=chroma_port,
    )
    try:
        _wait_until_ready(running)
        yield running
    finally:
        stop_app(running)
        # Nothing of ours may outlive the run, even when a test failed half-way.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for server_port in (model_port, chroma_port):
            for pid in procfs.processes_with_argument("--port", str(server_port)):
                os.kill(pid, signal.SIGKILL)
        client.close()
