"""Histora's own overhead on chat streaming, as ratios against a same-run baseline.

Everything runs on 127.0.0.1, each server in its own process (group):

* a fake OpenAI-compatible model server with a fixed per-token delay
  (``python -m histora.testing.fake_openai_server``);
* Histora's REST API alone, under uvicorn (``histora.api:create_api``);
* a bare FastAPI relay of the same stream (``bench/passthrough_api.py``), the floor
  that any service between client and model costs;
* the whole Reflex app, production build, driven by headless Chromium.

The baseline ("direct") streams the same completion straight from the model server,
so the fixed token delays cancel out and what is left is Histora's overhead: time to
first token (TTFT) and total time through the REST SSE route, at 1 stream and at N
concurrent streams, and the TTFT and websocket bytes of the Reflex page. This is a
benchmark, not a test: it prints figures and a verdict against the targets, never
fails on them. See bench/README.md.

    python bench/chat_overhead.py [--streams N] [--requests R] [--skip-reflex]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import itertools
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pause_penalty

ROOT = Path(__file__).resolve().parent.parent
MODEL = "bench"
CHARACTER_ID = "socrates"
QUESTION = "What is justice, Socrates?"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TARGET_REST_ADDED_TTFT_MS = 5.0  # p50, 1 stream
TARGET_REFLEX_ADDED_TTFT_MS = 50.0  # p50
TARGET_BYTES_PER_CHAR = 3.0  # websocket bytes received per reply character
SERVER_START_SECONDS = 30.0
APP_START_SECONDS = 300.0  # the production build alone takes 30-60 s
REPLY_TIMEOUT_SECONDS = 120.0
# Real prose for the replies (public-domain texts kept beside the checkout for tests and
# benchmarks); without it every reply is one repeated filler sentence.
DEFAULT_REPLY_TEXT = ROOT.parent / "shared" / "corpus" / "plato__republic.txt"
# Replies start this many words in, past a title block; each Reflex reply length starts
# REPLY_TEXT_STRIDE words further, so no length reuses another's passages.
REPLY_TEXT_START = 500
REPLY_TEXT_STRIDE = 10_000


@dataclass(frozen=True)
class Options:
    streams: int
    requests: int
    warmups: int
    token_delay: float
    reply_tokens: int
    reflex_lengths: tuple[int, ...]
    reflex_sends: int
    skip_reflex: bool
    skip_rest: bool
    reply_text: Path | None  # replies are its consecutive passages; None: one filler reply
    database_url: str | None
    keep_logs: bool
    frames_file: Path | None = None  # every frame of the bytes-table conversations, as JSON lines


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@contextlib.contextmanager
def running(
    command: Sequence[str], *, env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a command in its own process group; the whole group is stopped on exit."""
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for_http(
    url: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    *,
    timeout: float,
    accept: Callable[[int], bool] = lambda status: True,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited early:\n{_log_tail(log_path)}")
        with contextlib.suppress(httpx.HTTPError):
            if accept(httpx.get(url, timeout=2).status_code):
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s:\n{_log_tail(log_path)}")


@contextlib.contextmanager
def fake_model_server(
    port: int,
    *,
    reply_tokens: int,
    token_delay: float,
    reply_text: Path | None,
    log_dir: Path,
    reply_start: int = REPLY_TEXT_START,
) -> Iterator[str]:
    """The fake model server in its own process; yields its base URL (…/v1)."""
    log_path = log_dir / "fake-model.log"
    command = [
        sys.executable,
        "-m",
        "histora.testing.fake_openai_server",
        *("--port", str(port), "--model", MODEL),
        *("--reply-tokens", str(reply_tokens), "--token-delay", str(token_delay)),
        *(
            ("--reply-text", str(reply_text), "--reply-start", str(reply_start))
            if reply_text
            else ()
        ),
    ]
    base_url = f"http://127.0.0.1:{port}/v1"
    with running(command, env=dict(os.environ), log_path=log_path) as process:
        wait_for_http(f"{base_url}/models", process, log_path, timeout=SERVER_START_SECONDS)
        yield base_url


def histora_env(data_dir: Path, model_base_url: str, database_url: str | None) -> dict[str, str]:
    # Inherited HISTORA_* variables would change what is measured: drop them.
    env = {key: value for key, value in os.environ.items() if not key.startswith("HISTORA_")}
    return env | {
        "HISTORA_DATA_DIR": str(data_dir),
        "HISTORA_DATABASE_URL": database_url or f"sqlite:///{data_dir / 'bench.db'}",
        "HISTORA_MODEL_PROVIDER": "openai",
        "HISTORA_OPENAI_BASE_URL": model_base_url,
        "HISTORA_OPENAI_API_KEY": "bench",
        "HISTORA_CHAT_MODELS": MODEL,
        # Above the longest reply asked for, or the fake server stops at the default 700.
        "HISTORA_MODEL_MAX_TOKENS": "2048",
        "HISTORA_LOG_LEVEL": "WARNING",
        # The bench user sends far more replies than a person would.
        "HISTORA_SIGNUP_CREDITS": "1000000",
        "HISTORA_CHAT_RATE_LIMIT": "1000000/minute",
    }


def seed(env: dict[str, str], log_dir: Path) -> None:
    """Migrate and seed the catalogue, as an operator would before starting the app."""
    log_path = log_dir / "seed.log"
    with log_path.open("ab") as log_file:
        result = subprocess.run(
            [sys.executable, "-m", "histora.cli", "seed"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=120,
        )
    if result.returncode != 0:
        raise RuntimeError(f"histora.cli seed failed:\n{_log_tail(log_path)}")


@contextlib.contextmanager
def histora_api(env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """Histora's REST API alone, under uvicorn; yields its base URL (…/api/v1)."""
    port = free_port()
    log_path = log_dir / "api.log"
    command = [
        *("uvicorn", "--factory", "histora.api:create_api"),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        "--no-access-log",
    ]
    with running(command, env=env, log_path=log_path) as process:
        url = f"http://127.0.0.1:{port}/api/v1"
        wait_for_http(f"{url}/characters?limit=1", process, log_path, timeout=60)
        yield url


@contextlib.contextmanager
def passthrough_api(model_base_url: str, log_dir: Path) -> Iterator[str]:
    """The floor: a bare FastAPI relay of the same stream (bench/passthrough_api.py)."""
    port = free_port()
    log_path = log_dir / "passthrough.log"
    command = [
        *("uvicorn", "--factory", "passthrough_api:create_app", "--app-dir", str(ROOT / "bench")),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        "--no-access-log",
    ]
    env = dict(os.environ) | {
        "BENCH_MODEL_URL": model_base_url,
        "BENCH_MODEL": MODEL,
        "PYTHONPATH": str(ROOT),  # --app-dir replaces the working directory on the path
    }
    with running(command, env=env, log_path=log_path) as process:
        wait_for_http(
            f"http://127.0.0.1:{port}/openapi.json", process, log_path, timeout=SERVER_START_SECONDS
        )
        yield f"http://127.0.0.1:{port}/api/v1"


@contextlib.contextmanager
def reflex_app(
    env: dict[str, str], log_dir: Path, *, port: int | None = None, proxy_url: str | None = None
) -> Iterator[str]:
    """The whole app, production build on one port; yields its origin URL.

    ``proxy_url``: the byte-counting proxy in front of the app. The built frontend
    then opens its websocket there (Reflex bakes the backend URL into the build),
    and the app accepts that origin.
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = log_dir / "reflex.log"
    command = [
        *("reflex", "run", "--env", "prod"),
        *("--frontend-port", str(port), "--backend-port", str(port)),
        *("--backend-host", "127.0.0.1"),
    ]
    # The websocket is refused from origins not listed here.
    app_env = env | {"HISTORA_CORS_ORIGINS": ",".join([url, *filter(None, [proxy_url])])}
    if proxy_url:
        app_env["REFLEX_API_URL"] = proxy_url
    with running(command, env=app_env, log_path=log_path) as process:
        wait_for_http(f"{url}/api/v1/health", process, log_path, timeout=APP_START_SECONDS)
        wait_for_http(url, process, log_path, timeout=60, accept=lambda status: status == 200)
        yield url


# ---------------------------------------------------------------- wire bytes


@dataclass
class WireCounts:
    """Bytes that crossed the TCP connection of the app's /_event websocket(s)."""

    down: int = 0  # server -> browser, websocket frames after the handshake
    up: int = 0  # browser -> server, websocket frames after the handshake
    extensions: str = ""  # Sec-WebSocket-Extensions of the last handshake response


class ByteCountingProxy:
    """A TCP proxy in front of the app: the browser talks to it, it talks to the app.

    The browser reports websocket payloads after permessage-deflate has been undone;
    this counts what the network carries (frame headers and compressed payloads).
    Only ``/_event`` websocket connections are counted, from the end of the upgrade
    handshake on. Runs its own event loop in a daemon thread.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.counts = WireCounts()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wire-proxy", daemon=True)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def __enter__(self) -> ByteCountingProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the byte-counting proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self._ready.set()
        self._loop.run_forever()
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = await reader.read(65536)
            if not chunk:
                break
            head += chunk
        request = head.split(b"\r\n\r\n", 1)[0].lower()
        websocket = b"/_event" in request.split(b"\r\n", 1)[0] and b"upgrade: websocket" in request
        up_writer.write(head)
        await asyncio.gather(
            self._pump(reader, up_writer, websocket=websocket, down=False),
            self._pump(up_reader, writer, websocket=websocket, down=True),
            return_exceptions=True,
        )

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        websocket: bool,
        down: bool,
    ) -> None:
        handshake = websocket and down  # the server's 101 response is not a frame
        buffer = b""
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
                if not websocket:
                    continue
                if handshake:
                    buffer += chunk
                    if b"\r\n\r\n" not in buffer:
                        continue
                    headers, rest = buffer.split(b"\r\n\r\n", 1)
                    self.counts.extensions = next(
                        (
                            line.split(b":", 1)[1].strip().decode(errors="replace")
                            for line in headers.split(b"\r\n")
                            if line.lower().startswith(b"sec-websocket-extensions:")
                        ),
                        "(none)",
                    )
                    handshake, chunk = False, rest
                if down:
                    self.counts.down += len(chunk)
                else:
                    self.counts.up += len(chunk)
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Sample:
    """One streamed reply, in seconds; ``error`` set when it did not complete.

    ``headers`` is the time to the response headers: for Histora, the work done
    before the stream starts (sign-in, quota and the user message saved).
    """

    headers: float = math.nan
    ttft: float = math.nan
    total: float = math.nan
    error: str | None = None


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    data = sorted(v for v in values if not math.isnan(v))
    if not data:
        return math.nan
    rank = (len(data) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    headers_p50: float
    ttft_p50: float
    ttft_p95: float
    total_p50: float
    total_p95: float
    count: int
    errors: int
    first_error: str | None
    error_kinds: str  # e.g. "90 ReadTimeout, 10 HTTP 500"

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Summary:
        good = [s for s in samples if s.error is None]
        errors = [s.error for s in samples if s.error is not None]
        ttfts, totals = [s.ttft for s in good], [s.total for s in good]
        return cls(
            headers_p50=percentile([s.headers for s in good], 50),
            ttft_p50=percentile(ttfts, 50),
            ttft_p95=percentile(ttfts, 95),
            total_p50=percentile(totals, 50),
            total_p95=percentile(totals, 95),
            count=len(samples),
            errors=len(errors),
            first_error=errors[0] if errors else None,
            error_kinds=", ".join(
                f"{count} {kind}"
                for kind, count in Counter(e.split(":")[0] for e in errors).most_common()
            ),
        )


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def signed_ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:+.1f} ms"


def times(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def ratio(a: float, b: float) -> float:
    return a / b if b and not (math.isnan(a) or math.isnan(b)) else math.nan


def verdict(met: bool | None) -> str:
    return {True: "MET", False: "NOT MET", None: "n/a"}[met]


def within(value: float, limit: float) -> bool | None:
    return None if math.isnan(value) else value <= limit


def print_comparison(
    title: str, direct: Summary, histora: Summary, passthrough: Summary | None = None
) -> None:
    print(f"\n{title}")
    columns = ("headers p50", "TTFT p50", "TTFT p95", "total p50", "total p95")
    print(f"  {'':12}" + "".join(f"{c:>12}" for c in columns) + "  errors")
    rows = [("direct", direct), ("Histora", histora)]
    if passthrough is not None:
        rows.insert(1, ("passthrough", passthrough))
    for name, row in rows:
        cells = (row.headers_p50, row.ttft_p50, row.ttft_p95, row.total_p50, row.total_p95)
        print(
            f"  {name:12}" + "".join(f"{ms(v):>12}" for v in cells) + f"  {row.errors}/{row.count}"
        )
        if row.first_error:
            print(f"  {'':12}errors: {row.error_kinds}; first: {row.first_error}")
    added = (histora.ttft_p50 - direct.ttft_p50, histora.total_p50 - direct.total_p50)
    print(f"  {'added p50':12}{'':12}{signed_ms(added[0]):>12}{'':12}{signed_ms(added[1]):>12}")
    if passthrough is not None:
        own = (histora.ttft_p50 - passthrough.ttft_p50, histora.total_p50 - passthrough.total_p50)
        print(f"  {'own p50':12}{'':12}{signed_ms(own[0]):>12}{'':12}{signed_ms(own[1]):>12}")
    ratios = (ratio(histora.ttft_p50, direct.ttft_p50), ratio(histora.total_p50, direct.total_p50))
    print(f"  {'ratio p50':12}{'':12}{times(ratios[0]):>12}{'':12}{times(ratios[1]):>12}")


# ---------------------------------------------------------------- streaming clients


def describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def stream_direct(client: httpx.AsyncClient, base_url: str) -> Sample:
    """The baseline: the completion straight from the model server."""
    body = {
        "model": MODEL,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": QUESTION}],
    }
    started, first = time.perf_counter(), math.nan
    try:
        async with client.stream("POST", f"{base_url}/chat/completions", json=body) as response:
            headers = time.perf_counter() - started
            if response.status_code != 200:
                return Sample(error=f"HTTP {response.status_code}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choices = json.loads(line[6:]).get("choices") or [{}]
                if math.isnan(first) and choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter() - started
    except httpx.HTTPError as exc:
        return Sample(error=describe(exc))
    return Sample(headers=headers, ttft=first, total=time.perf_counter() - started)


async def stream_histora(client: httpx.AsyncClient, api_url: str, session_id: str) -> Sample:
    """One reply through the REST SSE route: TTFT at the first delta, total at done."""
    url = f"{api_url}/chat/sessions/{session_id}/messages"
    started, first = time.perf_counter(), math.nan
    try:
        body = {"content": QUESTION, "stream": True}
        async with client.stream("POST", url, json=body) as response:
            headers = time.perf_counter() - started
            if response.status_code != 200:
                await response.aread()
                return Sample(error=f"HTTP {response.status_code}: {response.text[:200]}")
            async for line in response.aiter_lines():
                if line == "event: delta" and math.isnan(first):
                    first = time.perf_counter() - started
                elif line == "event: error":
                    return Sample(error="error event in the stream")
                elif line == "event: done":
                    total = time.perf_counter() - started
                    return Sample(headers=headers, ttft=first, total=total)
    except httpx.HTTPError as exc:
        return Sample(error=describe(exc))
    return Sample(error="the stream ended without a done event")


def new_account() -> dict[str, str]:
    """Registration fields for a fresh bench user."""
    return {
        "email": f"bench-{secrets.token_hex(6)}@example.com",
        "password": secrets.token_urlsafe(18),
        "display_name": "Bench",
    }


async def register(client: httpx.AsyncClient, api_url: str, account: dict[str, str]) -> str:
    """Register a user; returns its access token."""
    response = await client.post(f"{api_url}/auth/register", json=account)
    response.raise_for_status()
    return str(response.json()["access_token"])


async def use_api_key(client: httpx.AsyncClient, api_url: str) -> None:
    """Sign the client in as a fresh user with an API key, as an external client would."""
    access_token = await register(client, api_url, new_account())
    response = await client.post(
        f"{api_url}/api-keys",
        json={"name": "bench"},
        headers={"Authorization": f"Bearer {access_token}"},
    )
    response.raise_for_status()
    client.headers["Authorization"] = f"Bearer {response.json()['secret']}"


async def create_sessions(client: httpx.AsyncClient, api_url: str, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = await client.post(
            f"{api_url}/chat/sessions", json={"character_id": CHARACTER_ID}
        )
        response.raise_for_status()
        ids.append(str(response.json()["id"]))
    return ids


async def sequential(calls: Sequence[Callable[[], Awaitable[Sample]]]) -> list[Sample]:
    return [await call() for call in calls]


async def alternate(
    direct: Callable[[], Awaitable[Sample]],
    passthrough: Callable[[str], Awaitable[Sample]],
    histora: Sequence[Callable[[], Awaitable[Sample]]],
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Direct, passthrough, Histora, and again: drift hits all three alike."""
    rounds = [(await direct(), await passthrough("-"), await call()) for call in histora]
    return [r[0] for r in rounds], [r[1] for r in rounds], [r[2] for r in rounds]


async def concurrent(calls: Sequence[Callable[[], Awaitable[Sample]]]) -> list[Sample]:
    return list(await asyncio.gather(*(call() for call in calls)))


def new_client(connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(REPLY_TIMEOUT_SECONDS))


# ---------------------------------------------------------------- REST bench


@dataclass(frozen=True)
class RestFigures:
    streams: int
    direct_one: Summary
    passthrough_one: Summary
    histora_one: Summary
    direct_many: Summary
    histora_many: Summary
    pause: pause_penalty.PausePenalty


async def bench_rest(
    opts: Options, model_url: str, api_url: str, passthrough_url: str
) -> RestFigures:
    n, runs = opts.streams, opts.warmups + opts.requests
    pause = await pause_penalty.measure_in_loop()
    async with new_client(n + 10) as client:
        await use_api_key(client, api_url)
        one_ids = await create_sessions(client, api_url, runs)
        many_ids = await create_sessions(client, api_url, n)
        direct = functools.partial(stream_direct, client, model_url)
        histora = [functools.partial(stream_histora, client, api_url, sid) for sid in one_ids]
        passthrough = functools.partial(stream_histora, client, passthrough_url)
        await alternate(direct, passthrough, histora[: opts.warmups])
        direct_one, passthrough_one, histora_one = await alternate(
            direct, passthrough, histora[opts.warmups :]
        )
        direct_many = await concurrent([direct] * n)
        histora_many = await concurrent(
            [functools.partial(stream_histora, client, api_url, sid) for sid in many_ids]
        )
    return RestFigures(
        streams=n,
        direct_one=Summary.of(direct_one),
        passthrough_one=Summary.of(passthrough_one),
        histora_one=Summary.of(histora_one),
        direct_many=Summary.of(direct_many),
        histora_many=Summary.of(histora_many),
        pause=pause,
    )


def run_rest(opts: Options, log_dir: Path) -> RestFigures:
    data_dir = Path(tempfile.mkdtemp(prefix="rest-", dir=log_dir))
    with fake_model_server(
        free_port(),
        reply_tokens=opts.reply_tokens,
        token_delay=opts.token_delay,
        reply_text=opts.reply_text,
        log_dir=log_dir,
    ) as model_url:
        env = histora_env(data_dir, model_url, opts.database_url)
        seed(env, log_dir)
        with histora_api(env, log_dir) as api_url, passthrough_api(model_url, log_dir) as floor:
            figures = asyncio.run(bench_rest(opts, model_url, api_url, floor))
    print_comparison(
        f"REST SSE route, 1 stream ({opts.requests} sequential requests after "
        f"{opts.warmups} warm-ups)",
        figures.direct_one,
        figures.histora_one,
        figures.passthrough_one,
    )
    print(f"  This machine, {pause_penalty.describe(figures.pause)}.")
    print_comparison(
        f"REST SSE route, {figures.streams} concurrent streams (one session each)",
        figures.direct_many,
        figures.histora_many,
    )
    return figures


# ---------------------------------------------------------------- Reflex bench


@dataclass(frozen=True)
class Frame:
    at: float
    sent: bool
    size: int
    payload: str


@dataclass
class FrameLog:
    """Frames of the app's /_event websocket, as Chromium's network log records them.

    Read through the DevTools protocol, each frame with the browser's own timestamp
    (seconds): times between frames do not include how late the test driver got to
    hear of them, which on two busy cores is tens of milliseconds at times.
    """

    frames: list[Frame] = field(default_factory=list)
    _sockets: set[str] = field(default_factory=set)

    def attach(self, page: Any) -> None:
        session = page.context.new_cdp_session(page)
        session.on("Network.webSocketCreated", self._on_created)
        session.on("Network.webSocketFrameSent", lambda event: self._add(True, event))
        session.on("Network.webSocketFrameReceived", lambda event: self._add(False, event))
        session.send("Network.enable")

    def _on_created(self, event: dict[str, Any]) -> None:
        if "/_event" in event["url"]:
            self._sockets.add(event["requestId"])

    def _add(self, sent: bool, event: dict[str, Any]) -> None:
        if event["requestId"] not in self._sockets:
            return
        frame = event["response"]
        text = str(frame.get("payloadData", ""))
        # Text frames come as text; binary ones (opcode 2) base64-encoded.
        size = len(base64.b64decode(text)) if frame.get("opcode") == 2 else len(text.encode())
        self.frames.append(Frame(float(event["timestamp"]), sent, size, text))

    def since(self, index: int) -> list[Frame]:
        return self.frames[index:]


def _decoded(payload: str) -> Any:
    """A Socket.IO event frame (``42/_event,["event", {...}]``) as JSON, else None."""
    start = payload.find("[")
    if start < 0:
        return None
    try:
        return json.loads(payload[start:])
    except json.JSONDecodeError:
        return None


DRAFT_STATE = "chat_draft"  # histora.pages.chat.draft.STATE_NAME


def has_draft_text(value: Any) -> bool:
    """Whether a decoded state delta carries text for the draft (its chunk vars)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key).split(".")[-1] == DRAFT_STATE and isinstance(item, dict):
                chunks = (text for name, text in item.items() if name != "sources_rx_state_")
                if any(isinstance(text, str) and text for text in chunks):
                    return True
            elif has_draft_text(item):
                return True
    elif isinstance(value, list):
        return any(has_draft_text(item) for item in value)
    return False


def is_send_event(frame: Frame) -> bool:
    return frame.sent and ".send" in frame.payload


@dataclass(frozen=True)
class Reply:
    tokens: int
    chars: int
    frames: int
    bytes: int  # payload: frame payloads as the browser's network log has them (decompressed)
    ttft: float  # send frame sent -> first frame with a non-empty draft
    wire: int = 0  # wire: bytes on the TCP connection (frame headers, compressed)

    @property
    def bytes_per_char(self) -> float:
        return ratio(self.bytes, self.chars)

    @property
    def wire_per_char(self) -> float:
        return ratio(self.wire, self.chars)


def wait_until_quiet(page: Any, log: FrameLog, quiet_ms: int = 300, max_ms: int = 5000) -> None:
    """Let the frames that follow a reply arrive (the conversation list refresh)."""
    for _ in range(max_ms // quiet_ms):
        seen = len(log.frames)
        page.wait_for_timeout(quiet_ms)
        if len(log.frames) == seen:
            return


def send_and_measure(
    page: Any, log: FrameLog, *, tokens: int, wire: WireCounts | None = None
) -> Reply:
    from playwright.sync_api import expect

    replies = page.get_by_test_id("assistant-message")
    before = replies.count()
    page.get_by_label("Your message").fill(QUESTION)
    mark = len(log.frames)
    wire_mark = wire.down if wire else 0
    page.get_by_test_id("send").click()
    expect(replies).to_have_count(before + 1, timeout=REPLY_TIMEOUT_SECONDS * 1000)
    wait_until_quiet(page, log)
    wire_bytes = wire.down - wire_mark if wire else 0
    window = log.since(mark)
    received = [f for f in window if not f.sent]
    sent_at = next((f.at for f in window if is_send_event(f)), math.nan)
    first_draft = next(
        (f.at for f in received if f.at >= sent_at and has_draft_text(_decoded(f.payload))),
        math.nan,
    )
    return Reply(
        tokens=tokens,
        chars=len(replies.last.inner_text()),
        frames=len(received),
        bytes=sum(f.size for f in received),
        ttft=first_draft - sent_at,
        wire=wire_bytes,
    )


def open_chat(context: Any, url: str) -> tuple[Any, FrameLog]:
    """A new tab: a fresh Reflex client and, on its first send, a new conversation."""
    page = context.new_page()
    page.set_default_timeout(30_000)
    log = FrameLog()
    log.attach(page)
    page.goto(f"{url}/chat/{CHARACTER_ID}")
    page.get_by_label("Your message").wait_for()
    return page, log


def sign_in(context: Any, url: str) -> None:
    """Register a bench user through the API, then sign in through the login page.

    Later tabs of the same browser context stay signed in (the refresh token is in
    localStorage).
    """
    account = new_account()
    httpx.post(f"{url}/api/v1/auth/register", json=account, timeout=30).raise_for_status()
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{url}/login?next=/chat/{CHARACTER_ID}")
    page.locator("input[name=email]").fill(account["email"])
    page.locator("input[name=password]").fill(account["password"])
    page.get_by_test_id("sign-in").click()
    page.get_by_label("Your message").wait_for()
    page.close()


@dataclass(frozen=True)
class ReflexFigures:
    direct: Summary
    ttft: Summary
    replies: list[Reply]  # the first reply of a new conversation, at each length
    seconds: list[Reply]  # the reply to a second question in that conversation
    thirds: list[Reply]  # and to a third
    extensions: str  # Sec-WebSocket-Extensions the app answered the browser with


def run_reflex(opts: Options, log_dir: Path) -> ReflexFigures:
    from playwright.sync_api import sync_playwright

    data_dir = Path(tempfile.mkdtemp(prefix="reflex-", dir=log_dir))
    model_port, short = free_port(), opts.reflex_lengths[0]
    model_url = f"http://127.0.0.1:{model_port}/v1"
    env = histora_env(data_dir, model_url, opts.database_url)
    seed(env, log_dir)
    print(f"\nReflex: building and starting the app (logs in {log_dir}) …", flush=True)
    serve = functools.partial(
        fake_model_server,
        model_port,
        token_delay=opts.token_delay,
        reply_text=opts.reply_text,
        log_dir=log_dir,
    )
    with contextlib.ExitStack() as stack:
        model = stack.enter_context(contextlib.ExitStack())
        model.enter_context(serve(reply_tokens=short))
        app_port = free_port()
        # The browser goes through the proxy, which counts the bytes on the wire.
        proxy = stack.enter_context(ByteCountingProxy(app_port))
        stack.enter_context(reflex_app(env, log_dir, port=app_port, proxy_url=proxy.url))
        url, wire = proxy.url, proxy.counts
        direct = asyncio.run(_direct_sequential(model_url, opts.warmups, opts.reflex_sends))
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        stack.callback(browser.close)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        sign_in(context, url)
        page, log = open_chat(context, url)
        for _ in range(opts.warmups):
            send_and_measure(page, log, tokens=short, wire=wire)
        samples = [
            send_and_measure(page, log, tokens=short, wire=wire) for _ in range(opts.reflex_sends)
        ]
        page.close()
        replies, seconds, thirds = [], [], []
        for index, tokens in enumerate(opts.reflex_lengths):
            model.close()  # the model server again, same port, another reply length
            start = REPLY_TEXT_START + REPLY_TEXT_STRIDE * (index + 1)
            model.enter_context(serve(reply_tokens=tokens, reply_start=start))
            page, log = open_chat(context, url)
            marks = [len(log.frames)]
            replies.append(send_and_measure(page, log, tokens=tokens, wire=wire))
            marks.append(len(log.frames))
            # More questions in the same conversation: no new address or list entry.
            seconds.append(send_and_measure(page, log, tokens=tokens, wire=wire))
            marks.append(len(log.frames))
            thirds.append(send_and_measure(page, log, tokens=tokens, wire=wire))
            page.close()
            if opts.frames_file:
                write_frames(opts.frames_file, f"{tokens} tokens", log.frames, marks)
    figures = ReflexFigures(
        direct=direct,
        ttft=Summary.of([Sample(ttft=s.ttft) for s in samples]),
        replies=replies,
        seconds=seconds,
        thirds=thirds,
        extensions=wire.extensions or "(no websocket seen)",
    )
    print_reflex(figures, short)
    return figures


def write_frames(path: Path, conversation: str, frames: Sequence[Frame], marks: list[int]) -> None:
    """Append one conversation's frames to ``path``: those before its first send are the
    page's load (``reply`` 0), then each reply's from its send on (1, 2, 3)."""
    with path.open("a") as out:
        for index, frame in enumerate(frames):
            reply = sum(1 for mark in marks if index >= mark)
            record = {
                "conversation": conversation,
                "reply": reply,
                "sent": frame.sent,
                "size": frame.size,
                "payload": frame.payload,
            }
            out.write(json.dumps(record) + "\n")


async def _direct_sequential(model_url: str, warmups: int, count: int) -> Summary:
    async with new_client(4) as client:
        direct = functools.partial(stream_direct, client, model_url)
        await sequential([direct] * warmups)
        return Summary.of(await sequential([direct] * count))


def print_reflex(figures: ReflexFigures, short: int) -> None:
    direct, ttft = figures.direct, figures.ttft
    print(f"\nReflex websocket path, TTFT ({ttft.count} sends of {short}-token replies)")
    print(f"  {'':10}{'TTFT p50':>12}{'TTFT p95':>12}")
    for name, row in (("direct", direct), ("Reflex", ttft)):
        print(f"  {name:10}{ms(row.ttft_p50):>12}{ms(row.ttft_p95):>12}")
    print(f"  {'added p50':10}{signed_ms(ttft.ttft_p50 - direct.ttft_p50):>12}")
    print(f"\nReflex websocket (Sec-WebSocket-Extensions from the app: {figures.extensions})")
    print_bytes_table("the first reply of a new conversation", figures.replies)
    print_bytes_table("a second reply in that conversation", figures.seconds)
    print_bytes_table("a third reply in that conversation", figures.thirds)
    print(
        "  payload: websocket frame payloads as the browser hands them to the page "
        "(after\n  permessage-deflate is undone); wire: the bytes on the TCP connection "
        "(frame headers and\n  compressed payloads), counted by a proxy between browser "
        "and app. marginal: extra bytes\n  per extra reply character, against the row "
        "above (flat when bytes grow linearly)."
    )


def print_bytes_table(title: str, replies: Sequence[Reply]) -> None:
    print(f"  {title}")
    columns = ("tokens", "chars", "frames", "payload", "/char", "marginal", "wire", "/char")
    print("  " + "".join(f"{c:>10}" for c in columns) + "  marginal")
    previous: Reply | None = None
    for r in replies:
        cells = [f"{c:>10}" for c in (r.tokens, r.chars, r.frames, r.bytes)]
        cells.append(f"{r.bytes_per_char:>10.1f}")
        cells.append(f"{marginal_bytes_per_char(previous, r) if previous else math.nan:>10.1f}")
        cells += [f"{r.wire:>10}", f"{r.wire_per_char:>10.1f}"]
        cells.append(f"{marginal_wire_per_char(previous, r) if previous else math.nan:>10.1f}")
        print("  " + "".join(cells).replace("nan", "  "))
        previous = r


def marginal_bytes_per_char(shorter: Reply, longer: Reply) -> float:
    return ratio(longer.bytes - shorter.bytes, longer.chars - shorter.chars)


def marginal_wire_per_char(shorter: Reply, longer: Reply) -> float:
    return ratio(longer.wire - shorter.wire, longer.chars - shorter.chars)


# ---------------------------------------------------------------- summary


def _rest_summary(rest: RestFigures) -> list[tuple[str, str, str, str]]:
    one_added = rest.histora_one.ttft_p50 - rest.direct_one.ttft_p50
    floor_added = rest.passthrough_one.ttft_p50 - rest.direct_one.ttft_p50
    own = rest.histora_one.ttft_p50 - rest.passthrough_one.ttft_p50
    many_added = rest.histora_many.ttft_p50 - rest.direct_many.ttft_p50
    return [
        ("REST added TTFT p50, 1 stream", ms(one_added), f"<= {TARGET_REST_ADDED_TTFT_MS:g} ms",
         verdict(within(one_added * 1000, TARGET_REST_ADDED_TTFT_MS))),
        ("  of which a bare relay adds (passthrough)", ms(floor_added), "", ""),
        ("  of which Histora's own work", ms(own), "", ""),
        ("  request code after a pause, against back to back",
         f"{rest.pause.factor:.1f}x slower", "", ""),
        ("REST TTFT ratio p50, 1 stream",
         times(ratio(rest.histora_one.ttft_p50, rest.direct_one.ttft_p50)), "", ""),
        ("REST total ratio p50, 1 stream",
         times(ratio(rest.histora_one.total_p50, rest.direct_one.total_p50)), "", ""),
        (f"REST added TTFT p50, {rest.streams} streams", ms(many_added), "", ""),
        (f"REST TTFT ratio p50, {rest.streams} streams",
         times(ratio(rest.histora_many.ttft_p50, rest.direct_many.ttft_p50)), "", ""),
        (f"REST total ratio p50, {rest.streams} streams",
         times(ratio(rest.histora_many.total_p50, rest.direct_many.total_p50)), "", ""),
        (f"REST errors, 1 / {rest.streams} streams",
         f"{rest.histora_one.errors} / {rest.histora_many.errors}", "0",
         verdict(rest.histora_one.errors + rest.histora_many.errors == 0)),
    ]  # fmt: skip


def print_summary(opts: Options, rest: RestFigures | None, reflex: ReflexFigures | None) -> None:
    lines = [] if rest is None else _rest_summary(rest)
    if reflex is not None:
        added = reflex.ttft.ttft_p50 - reflex.direct.ttft_p50
        lengths = "/".join(str(r.tokens) for r in reflex.replies)
        steps = list(itertools.pairwise(reflex.replies))
        lines.append(
            ("Reflex added TTFT p50", ms(added), f"<= {TARGET_REFLEX_ADDED_TTFT_MS:g} ms",
             verdict(within(added * 1000, TARGET_REFLEX_ADDED_TTFT_MS)))
        )  # fmt: skip
        for label, per_char, marginal_of in (
            ("wire", Reply.wire_per_char, marginal_wire_per_char),
            ("payload", Reply.bytes_per_char, marginal_bytes_per_char),
        ):
            marginal = marginal_of(*steps[-1]) if steps else math.nan
            for title, replies in (
                (f"Reflex {label} bytes/char ({lengths} tok)", reflex.replies),
                ("  the same, second reply of a conversation", reflex.seconds),
                ("  the same, third reply of a conversation", reflex.thirds),
            ):
                values = [per_char.fget(r) for r in replies]
                lines.append(
                    (title, " / ".join(f"{v:.1f}" for v in values), f"<= {TARGET_BYTES_PER_CHAR:g}",
                     verdict(within(max(values, default=math.nan), TARGET_BYTES_PER_CHAR)))
                )  # fmt: skip
            lines.append(
                (f"Reflex {label} marginal bytes/char, last step", f"{marginal:.1f}",
                 f"<= {TARGET_BYTES_PER_CHAR:g}", verdict(within(marginal, TARGET_BYTES_PER_CHAR)))
            )  # fmt: skip
    print("\n== Summary " + "=" * 69)
    print(
        f"  model: {opts.reply_tokens}-token replies (Reflex: {opts.reflex_lengths}), "
        f"{opts.token_delay * 1000:g} ms per token; database: "
        f"{opts.database_url or 'SQLite (temporary file)'}"
    )
    if opts.reply_text:
        print(f"  reply text: passages of {opts.reply_text.name}, a different one each reply")
    else:
        print("  reply text: ONE FILLER SENTENCE, the same every reply: wire figures flattered")
    for name, value, target, status in lines:
        print(f"  {name:46}{value:>16}  {target:>12}  {status}".rstrip())
    if rest is None:
        print("  REST route: skipped (--skip-rest)")
    if reflex is None:
        print("  Reflex websocket path: skipped (--skip-reflex)")


# ---------------------------------------------------------------- command line


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description=(
            "Measure Histora's own overhead on chat streaming (REST SSE route and the "
            "Reflex websocket path) against a direct stream from a fake model server, "
            "all in this run. Prints p50/p95 tables and a verdict against the targets."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--streams", type=int, default=100, help="concurrent REST streams (N)")
    add("--requests", type=int, default=30, help="sequential REST requests at 1 stream (R)")
    add("--warmups", type=int, default=3, help="unmeasured requests before each sequential run")
    add("--token-delay", type=float, default=0.01, help="fake model delay per token, seconds")
    add("--reply-tokens", type=int, default=40, help="tokens per reply for the REST runs")
    add(
        "--reflex-lengths",
        default="20,80,320",
        help="reply lengths in tokens for the Reflex bytes table; the first is used for TTFT",
    )
    add("--reflex-sends", type=int, default=10, help="measured Reflex sends for TTFT")
    add("--skip-reflex", action="store_true", help="skip the Reflex websocket path")
    add("--skip-rest", action="store_true", help="skip the REST route (Reflex part only)")
    replies = parser.add_mutually_exclusive_group()
    replies.add_argument(
        "--reply-text",
        type=Path,
        default=DEFAULT_REPLY_TEXT,
        help="replies are this text's consecutive passages, each one different, as a real "
        "model's are (compression depends on it)",
    )
    replies.add_argument(
        "--same-reply",
        action="store_true",
        help="every reply the same filler sentence (compresses far better than real text)",
    )
    add("--database-url", help="e.g. postgresql+psycopg://…; None: a temporary SQLite file")
    add("--keep-logs", action="store_true", help="keep the temporary logs and databases")
    add(
        "--frames",
        type=Path,
        metavar="FILE",
        help="write every websocket frame of the bytes-table conversations to FILE (JSON "
        "lines: conversation, reply, direction, size, payload), to see where the bytes go",
    )
    args = parser.parse_args(argv)
    lengths = tuple(int(part) for part in args.reflex_lengths.split(",") if part.strip())
    if args.streams < 1 or args.requests < 1 or not lengths:
        parser.error("--streams, --requests and --reflex-lengths need positive values")
    if not args.same_reply and not args.reply_text.is_file():
        parser.error(f"--reply-text: no such file: {args.reply_text} (or pass --same-reply)")
    return Options(
        streams=args.streams,
        requests=args.requests,
        warmups=max(0, args.warmups),
        token_delay=args.token_delay,
        reply_tokens=args.reply_tokens,
        reflex_lengths=lengths,
        reflex_sends=args.reflex_sends,
        skip_reflex=args.skip_reflex,
        skip_rest=args.skip_rest,
        reply_text=None if args.same_reply else args.reply_text,
        database_url=args.database_url,
        keep_logs=args.keep_logs,
        frames_file=args.frames,
    )


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    sys.exit(128 + signum)  # unwinds, so every server's process group is stopped


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if not opts.skip_reflex and not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} not found: install Debian's chromium, or pass --skip-reflex")
    if opts.frames_file:
        opts.frames_file.write_text("")  # this run's frames only
    log_dir = Path(tempfile.mkdtemp(prefix="histora-bench-"))
    print(f"Histora chat overhead benchmark (logs: {log_dir})", flush=True)
    try:
        rest = None if opts.skip_rest else run_rest(opts, log_dir)
        reflex = None if opts.skip_reflex else run_reflex(opts, log_dir)
    except BaseException:
        print(f"\nThe benchmark stopped; logs kept in {log_dir}", file=sys.stderr)
        raise
    print_summary(opts, rest, reflex)
    if not opts.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
