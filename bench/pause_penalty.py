"""How much slower this machine runs a request's Python code after a pause.

A chat request reaches a server that has been idle since the last one, and on some
machines (virtual ones above all) code that has not run for a few milliseconds runs
several times slower than the same code run back to back (a busy wait in place of
the pause does the same, so it is not the CPU sleeping: the core's caches have been
refilled by other work). Timings of single requests (the REST TTFT of
``chat_overhead.py``) pay that price on every step, so this prints it beside them.

The workload is one request through a bare FastAPI app with the chat send route's
shape (path parameter, JSON body), called in process through ASGI: no sockets, no
other process. It is timed back to back, then after a pause each time, in one run.

    python bench/pause_penalty.py [--pause-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

BACK_TO_BACK_CALLS = 500
PAUSED_CALLS = 60
WARMUP_CALLS = 50
_BODY = b'{"content": "What is justice, Socrates?", "stream": true}'


class _Send(BaseModel):
    content: str
    stream: bool = True


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/api/v1/chat/sessions/{session_id}/messages")
    async def send(session_id: uuid.UUID, body: _Send) -> dict[str, Any]:
        return {"session_id": str(session_id), "length": len(body.content)}

    return app


async def _request(app: FastAPI, path: str) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_BODY)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    messages = [{"type": "http.request", "body": _BODY, "more_body": False}]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    if statuses != [200]:
        raise RuntimeError(f"the probe request answered {statuses}")


@dataclass(frozen=True)
class PausePenalty:
    pause_ms: float
    back_to_back_ms: float  # p50 of one request, run back to back
    after_pause_ms: float  # p50 of one request, run after the pause

    @property
    def factor(self) -> float:
        return self.after_pause_ms / self.back_to_back_ms


async def measure_in_loop(pause_seconds: float = 0.02) -> PausePenalty:
    """Call it while nothing else runs in this process, and nothing heavy beside it."""
    app = _app()
    path = f"/api/v1/chat/sessions/{uuid.uuid4()}/messages"

    async def timed() -> float:
        started = time.perf_counter()
        await _request(app, path)
        return (time.perf_counter() - started) * 1000

    for _ in range(WARMUP_CALLS):
        await timed()
    hot = [await timed() for _ in range(BACK_TO_BACK_CALLS)]
    paused = []
    for _ in range(PAUSED_CALLS):
        await asyncio.sleep(pause_seconds)
        paused.append(await timed())
    return PausePenalty(
        pause_ms=pause_seconds * 1000,
        back_to_back_ms=statistics.median(hot),
        after_pause_ms=statistics.median(paused),
    )


def describe(penalty: PausePenalty) -> str:
    return (
        f"one request through a bare FastAPI route, in process: {penalty.back_to_back_ms:.3f} ms "
        f"back to back, {penalty.after_pause_ms:.3f} ms after a {penalty.pause_ms:g} ms pause "
        f"({penalty.factor:.1f}x)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pause-ms", type=float, default=20.0, help="pause before each call")
    args = parser.parse_args(argv)
    if args.pause_ms <= 0:
        parser.error("--pause-ms must be positive")
    print(describe(asyncio.run(measure_in_loop(args.pause_ms / 1000))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
