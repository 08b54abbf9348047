"""A real OpenAI-compatible HTTP server on loopback, scripted per model name.

Tests and benchmarks point the real chat client at it, so the whole path (HTTP,
SSE parsing, timeouts, fallbacks) runs as in production: HTTP errors with
Retry-After, error events inside an HTTP 200 stream (as OpenRouter sends them),
dropped connections, slow first tokens and clients that leave mid-stream.

    server = FakeOpenAIServer({"m1": ModelScript(reply="Hi there")})
    async with server.serve():          # or: with server.run_in_thread():
        client = OpenAI(base_url=server.base_url, ...)

Run on its own (one scripted model, serving until interrupted; benchmarks do this so
the server does not share a GIL with what they measure):

    python -m histora.testing.fake_openai_server --port 8900 --reply-tokens 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import socket
import sys
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

_START_TIMEOUT_SECONDS = 10.0
_TOKEN = re.compile(r"\s*\S+\s*")


@dataclass
class ModelScript:
    """How the server answers requests for one model name.

    ``status_code``, ``error_after_tokens``, ``drop_after_tokens`` and the delays
    apply to streaming requests; non-streaming ones honour ``status_code`` only.
    """

    reply: str = "Hello from the fake server."
    # When set, the n-th request for the model gets replies[n - 1] (cycling) instead of
    # `reply`: distinct replies, as a real model gives, for measuring compressed traffic.
    replies: tuple[str, ...] = ()
    tokens_per_chunk: int = 1
    per_token_delay_seconds: float = 0.0
    first_token_delay_seconds: float = 0.0
    # Answer with this HTTP error instead of a reply (429, 500, 404, ...).
    status_code: int | None = None
    retry_after: str | None = None  # Retry-After header value sent with status_code
    status_times: int | None = None  # only the first n requests get status_code; None: every one
    # Send an SSE error event after n tokens, then end the stream (HTTP status stays 200).
    error_after_tokens: int | None = None
    # Close the connection without finishing the chunked body after n tokens.
    drop_after_tokens: int | None = None
    served_model: str | None = None  # the answers' `model` field; default: the requested name
    # /v1/embeddings: vectors of this size (a hashed bag of words, deliberately not
    # unit length and listed in reverse order, so clients must normalise and sort).
    embedding_dimension: int = 16


def split_tokens(text: str) -> list[str]:
    """Words with their surrounding whitespace, so that joining them gives the text back."""
    return _TOKEN.findall(text)


class _ScriptedDrop(Exception):
    """Raised inside a response body to make uvicorn cut the connection."""


def _hide_scripted_drops(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, _ScriptedDrop)


class _QuietServer(uvicorn.Server):
    # The test runner owns the signal handlers; uvicorn must not take SIGINT away.
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class _Progress:
    finished: bool = False
    dropped: bool = False


class _StreamingReply(StreamingResponse):
    """Counts a disconnect when the client leaves before the scripted stream ended."""

    def __init__(
        self,
        body: AsyncIterator[bytes],
        *,
        progress: _Progress,
        disconnects: Counter[str],
        model: str,
    ) -> None:
        super().__init__(body, media_type="text/event-stream")
        self._progress = progress
        self._disconnects = disconnects
        self._model = model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not (self._progress.finished or self._progress.dropped):
                self._disconnects[self._model] += 1


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": "fake_server_error", "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def _sse(payload: Mapping[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def _count_prompt_tokens(body: Mapping[str, Any]) -> int:
    messages = body.get("messages") or []
    return sum(len(split_tokens(str(m.get("content", "")))) for m in messages)


class FakeOpenAIServer:
    """Scripted OpenAI-compatible server; see the module docstring.

    ``requests`` counts requests per model (unknown names included), ``last_request``
    keeps the last JSON body per model and ``last_authorization`` its Authorization
    header, ``disconnects`` counts streams the client
    left before their end. Scripts may be changed while the server runs. ``port``
    0 (the default) picks a free port.
    """

    def __init__(self, scripts: Mapping[str, ModelScript] | None = None, *, port: int = 0) -> None:
        self.scripts: dict[str, ModelScript] = dict(scripts or {})
        self._requested_port = port
        self.requests: Counter[str] = Counter()
        self.last_request: dict[str, dict[str, Any]] = {}
        self.last_authorization: dict[str, str | None] = {}
        self.disconnects: Counter[str] = Counter()
        self._port: int | None = None
        self._app = Starlette(
            routes=[
                Route("/v1/models", self._list_models, methods=["GET"]),
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            ]
        )

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the fake OpenAI server is not running")
        return f"http://127.0.0.1:{self._port}/v1"

    def register(self, model: str, script: ModelScript | None = None) -> ModelScript:
        self.scripts[model] = script or ModelScript()
        return self.scripts[model]

    def reset(self) -> None:
        """Forget every script and counter (for a server shared by several tests)."""
        self.scripts.clear()
        self.requests.clear()
        self.last_request.clear()
        self.last_authorization.clear()
        self.disconnects.clear()

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[FakeOpenAIServer]:
        """Run as a task of the current event loop."""
        server, sock = self._build()
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            deadline = time.monotonic() + _START_TIMEOUT_SECONDS
            while not server.started:
                if task.done() or time.monotonic() > deadline:
                    raise RuntimeError("the fake OpenAI server did not start")
                await asyncio.sleep(0.005)
            yield self
        finally:
            server.should_exit = True
            await task
            self._stopped(sock)

    @contextmanager
    def run_in_thread(self) -> Iterator[FakeOpenAIServer]:
        """Run in a daemon thread with its own event loop (for synchronous callers)."""
        server, sock = self._build()
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-openai-server", daemon=True
        )
        thread.start()
        try:
            deadline = time.monotonic() + _START_TIMEOUT_SECONDS
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the fake OpenAI server did not start")
                time.sleep(0.005)
            yield self
        finally:
            server.should_exit = True
            thread.join(timeout=_START_TIMEOUT_SECONDS)
            self._stopped(sock)

    def _build(self) -> tuple[uvicorn.Server, socket.socket]:
        # Binding port 0 ourselves gives a free port with no race against other processes.
        # The explicit IPPROTO_TCP matters: asyncio only turns Nagle's algorithm off
        # (TCP_NODELAY) on accepted sockets whose proto says TCP, and with Nagle on, a
        # chunk that follows the headers on a kept-alive connection waits ~40 ms for
        # the client's delayed ACK, which would add that to every time to first token.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        # A fixed port can be bound again right after a previous server on it stopped.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._requested_port))
        self._port = int(sock.getsockname()[1])
        logging.getLogger("uvicorn.error").addFilter(_hide_scripted_drops)
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        return _QuietServer(config), sock

    def _stopped(self, sock: socket.socket) -> None:
        sock.close()
        self._port = None

    async def _list_models(self, request: Request) -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "histora-tests"}
            for name in self.scripts
        ]
        return JSONResponse({"object": "list", "data": data})

    async def _chat_completions(self, request: Request) -> Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "the request body is not JSON")
        model = str(body.get("model", ""))
        self.requests[model] += 1
        self.last_request[model] = body
        self.last_authorization[model] = request.headers.get("authorization")
        script = self.scripts.get(model)
        if script is None:
            return _error(404, f"model {model!r} not found")
        if script.status_code is not None and (
            script.status_times is None or self.requests[model] <= script.status_times
        ):
            headers = {"Retry-After": script.retry_after} if script.retry_after else None
            return _error(script.status_code, f"scripted HTTP {script.status_code}", headers)
        replies = script.replies
        reply = replies[(self.requests[model] - 1) % len(replies)] if replies else script.reply
        answer = _Answer(script, body, reply=reply, served_model=script.served_model or model)
        if not body.get("stream"):
            return JSONResponse(answer.completion())
        progress = _Progress()
        return _StreamingReply(
            answer.chunks(progress), progress=progress, disconnects=self.disconnects, model=model
        )

    async def _embeddings(self, request: Request) -> Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "the request body is not JSON")
        model = str(body.get("model", ""))
        self.requests[model] += 1
        self.last_request[model] = body
        self.last_authorization[model] = request.headers.get("authorization")
        script = self.scripts.get(model)
        if script is None:
            return _error(404, f"model {model!r} not found")
        if script.status_code is not None and (
            script.status_times is None or self.requests[model] <= script.status_times
        ):
            headers = {"Retry-After": script.retry_after} if script.retry_after else None
            return _error(script.status_code, f"scripted HTTP {script.status_code}", headers)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        if not texts or not all(isinstance(t, str) and t for t in texts):
            return _error(400, "input must be a non-empty string or list of non-empty strings")
        data = [
            {"object": "embedding", "index": i, "embedding": _bag_of_words(t, script)}
            for i, t in enumerate(texts)
        ]
        tokens = sum(len(split_tokens(t)) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data[::-1],
                "model": script.served_model or model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _bag_of_words(text: str, script: ModelScript) -> list[float]:
    vector = [0.0] * script.embedding_dimension
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        vector[zlib.crc32(word.encode()) % script.embedding_dimension] += 2.0
    return vector


class _Answer:
    """One scripted reply, as a completion object or as SSE chunks."""

    def __init__(
        self, script: ModelScript, body: Mapping[str, Any], *, reply: str, served_model: str
    ) -> None:
        self.script = script
        self.model = served_model
        self.id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        self.created = int(time.time())
        self.tokens = split_tokens(reply)
        self.finish_reason = "stop"
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(limit, int) and len(self.tokens) > limit:
            self.tokens, self.finish_reason = self.tokens[:limit], "length"
        self.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.prompt_tokens = _count_prompt_tokens(body)

    def usage(self, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    def completion(self) -> dict[str, Any]:
        message = {"role": "assistant", "content": "".join(self.tokens)}
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": self.usage(len(self.tokens)),
        }

    def chunk(self, delta: Mapping[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    async def chunks(self, progress: _Progress) -> AsyncIterator[bytes]:
        script = self.script
        yield _sse(self.chunk({"role": "assistant", "content": ""}))
        if script.first_token_delay_seconds:
            await asyncio.sleep(script.first_token_delay_seconds)
        limits = [len(self.tokens), script.error_after_tokens, script.drop_after_tokens]
        stop_at = min(limit for limit in limits if limit is not None)
        step = max(1, script.tokens_per_chunk)
        # Token n is due n delays after the first token's clock starts, on a fixed
        # schedule: sleeping a delay per token would add each wake-up's lateness to
        # every later token, and that drift depends on how busy the machine is. Tokens
        # held up (by a reader that stopped reading, say) then leave in a burst.
        loop = asyncio.get_running_loop()
        clock = loop.time()
        for start in range(0, stop_at, step):
            end = min(start + step, stop_at)
            group = self.tokens[start:end]
            if script.per_token_delay_seconds:
                due = clock + script.per_token_delay_seconds * end
                await asyncio.sleep(max(0.0, due - loop.time()))
            yield _sse(self.chunk({"content": "".join(group)}))
        if stop_at == script.drop_after_tokens:
            progress.dropped = True
            raise _ScriptedDrop
        if stop_at == script.error_after_tokens:
            progress.finished = True
            yield _sse({"error": {"message": "scripted upstream failure", "code": 502}})
            return
        yield _sse(self.chunk({}, self.finish_reason))
        if self.include_usage:
            yield _sse({**self.chunk({}), "choices": [], "usage": self.usage(stop_at)})
        progress.finished = True
        yield _sse("[DONE]")


_FILLER = (
    "The unexamined life is not worth living, and so I ask you again, friend, "
    "what do you mean by justice when you speak of it in the market?"
)


def filler_reply(tokens: int) -> str:
    """A reply of exactly ``tokens`` tokens (as ``split_tokens`` counts them)."""
    words = _FILLER.split()
    return " ".join(words[i % len(words)] for i in range(tokens))


def passages(text: str, tokens: int, *, skip: int = 0) -> tuple[str, ...]:
    """``text`` cut into consecutive replies of exactly ``tokens`` tokens each, after
    its first ``skip`` words."""
    words = text.split()[skip:]
    return tuple(
        " ".join(words[start : start + tokens])
        for start in range(0, len(words) - tokens + 1, tokens)
    )


async def _serve_until_signalled(server: FakeOpenAIServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server.serve():
        sys.stdout.write(f"fake OpenAI server on {server.base_url}\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m histora.testing.fake_openai_server",
        description="Serve one scripted model on 127.0.0.1 until interrupted (SIGINT/SIGTERM).",
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: a free one)")
    parser.add_argument("--model", default="bench", help="model name to answer for")
    parser.add_argument("--reply-tokens", type=int, default=40, help="tokens in every reply")
    parser.add_argument(
        "--token-delay", type=float, default=0.01, help="seconds to wait before each token"
    )
    parser.add_argument(
        "--reply-text",
        type=argparse.FileType(encoding="utf-8"),
        help="a UTF-8 text file: each reply is its next passage of --reply-tokens tokens "
        "(default: the same filler sentence every time)",
    )
    parser.add_argument(
        "--reply-start", type=int, default=0, help="words of --reply-text to skip first"
    )
    args = parser.parse_args(argv)
    if args.reply_tokens < 1:
        parser.error("--reply-tokens must be at least 1")
    replies: tuple[str, ...] = ()
    if args.reply_text is not None:
        with args.reply_text as source:
            replies = passages(source.read(), args.reply_tokens, skip=max(0, args.reply_start))
        if not replies:
            parser.error(f"{source.name} holds fewer than {args.reply_tokens} words")
    script = ModelScript(
        reply=filler_reply(args.reply_tokens),
        replies=replies,
        per_token_delay_seconds=args.token_delay,
    )
    asyncio.run(_serve_until_signalled(FakeOpenAIServer({args.model: script}, port=args.port)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
