"""The OpenAI-compatible chat client against a real (scripted) HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from histora.providers.chat_models import (
    LocalChatModel,
    OpenAICompatibleChatModel,
    _RetryBudget,
    retry_after_seconds,
)
from histora.providers.chat_types import (
    ModelSpec,
    ModelStreamError,
    ModelTimedOutError,
    ModelUnavailableError,
    PromptMessage,
    StreamDelta,
    StreamEnd,
)
from histora.testing import FakeOpenAIServer, ModelScript
from tests.support import serve_app

PROMPT = [
    PromptMessage(role="system", content="You are Socrates."),
    PromptMessage(role="user", content="What is virtue?"),
]
REPLY = "Virtue is knowledge, my friend, and nobody does wrong willingly."
API_KEY = "sk-test-do-not-log"

MakeModel = Callable[..., OpenAICompatibleChatModel]


@pytest.fixture(scope="module")
async def shared_server() -> AsyncIterator[FakeOpenAIServer]:
    server = FakeOpenAIServer()
    async with server.serve():
        yield server


@pytest.fixture
def server(shared_server: FakeOpenAIServer) -> FakeOpenAIServer:
    shared_server.reset()
    return shared_server


@pytest.fixture
async def make_model(server: FakeOpenAIServer) -> AsyncIterator[MakeModel]:
    created: list[OpenAICompatibleChatModel] = []

    def make(
        *models: str | ModelSpec, base_url: str | None = None, retry_budget_seconds: float = 1.0
    ) -> OpenAICompatibleChatModel:
        model = OpenAICompatibleChatModel(
            provider_name="test",
            base_url=base_url or server.base_url,
            api_key=API_KEY,
            models=[m if isinstance(m, ModelSpec) else ModelSpec(name=m) for m in models],
            timeout_seconds=5,
            retry_budget_seconds=retry_budget_seconds,
        )
        created.append(model)
        return model

    yield make
    for model in created:
        await model.aclose()


async def _collect(
    model: OpenAICompatibleChatModel, deltas: list[str] | None = None, **kwargs: int
) -> tuple[list[str], StreamEnd]:
    """Run a stream; deltas land in ``deltas`` as they come, so they survive a raise."""
    deltas = [] if deltas is None else deltas
    ends: list[StreamEnd] = []
    async for event in model.stream(PROMPT, **kwargs):
        if isinstance(event, StreamDelta):
            assert not ends, "no text after the end"
            deltas.append(event.text)
        else:
            ends.append(event)
    assert len(ends) == 1
    return deltas, ends[0]


async def _eventually(predicate: Callable[[], bool]) -> None:
    """Wait up to a second for the server (another task or thread) to observe something."""
    for _ in range(100):
        if predicate():
            return
        await asyncio.sleep(0.01)
    assert predicate()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_stream_yields_deltas_then_usage(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(reply=REPLY, tokens_per_chunk=2))

    deltas, end = await _collect(make_model("a"))

    assert "".join(deltas) == REPLY
    assert len(deltas) > 1 and all(deltas)
    assert end == StreamEnd(model="a", prompt_tokens=6, completion_tokens=10, finish_reason="stop")


async def test_stream_end_names_the_model_the_provider_served(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("router/auto", ModelScript(served_model="vendor/model-2025"))

    _, end = await _collect(make_model("router/auto"))

    assert end.model == "vendor/model-2025"


async def test_stream_sends_messages_and_spec_settings(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a")

    await _collect(make_model(ModelSpec(name="a", temperature=0.2, max_tokens=64)))

    body = server.last_request["a"]
    assert body["messages"] == [
        {"role": "system", "content": "You are Socrates."},
        {"role": "user", "content": "What is virtue?"},
    ]
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 64
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert server.last_authorization["a"] == f"Bearer {API_KEY}"


async def test_penalties_and_extra_sampling_reach_the_model(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a")
    spec = ModelSpec(
        name="a",
        frequency_penalty=0.4,
        presence_penalty=-0.2,
        extra_sampling=(("repeat_penalty", 1.1), ("dry_multiplier", 0.8)),
    )

    await _collect(make_model(spec))
    streamed = server.last_request["a"]
    await make_model(spec).complete(PROMPT)
    completed = server.last_request["a"]

    for body in (streamed, completed):
        assert body["frequency_penalty"] == 0.4
        assert body["presence_penalty"] == -0.2
        assert (body["repeat_penalty"], body["dry_multiplier"]) == (1.1, 0.8)
        assert body["temperature"] == 0.7


async def test_unset_penalties_are_left_to_the_model(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a")

    await _collect(make_model(ModelSpec(name="a")))

    # Some OpenAI-compatible servers refuse parameters they do not know; send none.
    assert not {"frequency_penalty", "presence_penalty"} & server.last_request["a"].keys()


@pytest.mark.parametrize("name", ["temperature", "max_tokens", "model", "frequency_penalty"])
def test_extra_sampling_cannot_override_the_request(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ModelSpec(name="a", extra_sampling=((name, 1.0),))


async def test_stream_max_tokens_argument_overrides_spec(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(reply=REPLY))

    deltas, end = await _collect(make_model(ModelSpec(name="a", max_tokens=64)), max_tokens=3)

    assert server.last_request["a"]["max_tokens"] == 3
    assert "".join(deltas) == "Virtue is knowledge, "
    assert end.finish_reason == "length"


async def test_stream_falls_back_on_server_error(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(status_code=500))
    server.register("b", ModelScript(reply="From b."))

    deltas, end = await _collect(make_model("a", "b"))

    assert "".join(deltas) == "From b."
    assert end.model == "b"
    assert (server.requests["a"], server.requests["b"]) == (1, 1)


async def test_stream_falls_back_on_unknown_model(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("b", ModelScript(reply="From b."))

    deltas, _ = await _collect(make_model("misspelled/model", "b"))

    assert "".join(deltas) == "From b."
    assert (server.requests["misspelled/model"], server.requests["b"]) == (1, 1)


async def test_stream_falls_back_on_rate_limit_without_retry_after(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(status_code=429))
    server.register("b")
    server.register("c")

    _, end = await _collect(make_model("a", "b", "c"))

    assert end.model == "b"
    assert (server.requests["a"], server.requests["b"], server.requests["c"]) == (1, 1, 0)


async def test_stream_retries_same_model_after_retry_after_within_budget(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    script = ModelScript(reply="From a.", status_code=429, retry_after="0.3", status_times=1)
    server.register("a", script)
    server.register("b")

    started = time.monotonic()
    deltas, end = await _collect(make_model("a", "b", retry_budget_seconds=1.0))

    assert time.monotonic() - started >= 0.3
    assert "".join(deltas) == "From a." and end.model == "a"
    assert (server.requests["a"], server.requests["b"]) == (2, 0)


async def test_stream_retries_after_retry_after_http_date(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    past = formatdate(time.time() - 60, usegmt=True)  # already due: retry at once
    server.register("a", ModelScript(status_code=429, retry_after=past, status_times=1))

    _, end = await _collect(make_model("a"))

    assert end.model == "a"
    assert server.requests["a"] == 2


async def test_stream_moves_on_when_retry_after_exceeds_budget(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(status_code=429, retry_after="5"))
    server.register("b")

    started = time.monotonic()
    _, end = await _collect(make_model("a", "b", retry_budget_seconds=1.0))

    assert time.monotonic() - started < 1.0
    assert end.model == "b"
    assert (server.requests["a"], server.requests["b"]) == (1, 1)


async def test_stream_shares_retry_budget_across_models(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(status_code=429, retry_after="0.3"))
    server.register("b", ModelScript(status_code=429, retry_after="0.3"))
    server.register("c")

    _, end = await _collect(make_model("a", "b", "c", retry_budget_seconds=0.5))

    assert end.model == "c"
    # a waits 0.3 s and retries once; the 0.2 s left cannot cover b's wait.
    assert (server.requests["a"], server.requests["b"], server.requests["c"]) == (2, 1, 1)


async def test_stream_falls_back_on_error_event_before_first_token(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(error_after_tokens=0))
    server.register("b", ModelScript(reply="From b."))

    deltas, end = await _collect(make_model("a", "b"))

    assert "".join(deltas) == "From b." and end.model == "b"


async def test_stream_error_event_after_first_token_raises_without_fallback(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(reply=REPLY, error_after_tokens=2))
    server.register("b")
    deltas: list[str] = []

    with pytest.raises(ModelStreamError) as raised:
        await _collect(make_model("a", "b"), deltas)

    assert "".join(deltas) == "Virtue is "
    assert raised.value.model == "a"
    assert "502" in str(raised.value)
    assert server.requests["b"] == 0


async def test_stream_dropped_connection_raises_stream_error(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(reply=REPLY, drop_after_tokens=3))
    server.register("b")
    deltas: list[str] = []

    with pytest.raises(ModelStreamError):
        await _collect(make_model("a", "b"), deltas)

    assert "".join(deltas) == "Virtue is knowledge, "
    assert server.requests["b"] == 0


async def test_stream_raises_unavailable_when_every_model_fails(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(status_code=500))
    server.register("b", ModelScript(status_code=503))

    with pytest.raises(ModelUnavailableError) as raised:
        await _collect(make_model("a", "b", "missing"))

    attempts = raised.value.attempts
    assert [a.model for a in attempts] == ["a", "b", "missing"]
    assert [a.error.split(" (")[0] for a in attempts] == ["HTTP 500", "HTTP 503", "HTTP 404"]


async def test_stream_raises_unavailable_when_server_is_unreachable(make_model: MakeModel) -> None:
    model = make_model("a", "b", base_url=f"http://127.0.0.1:{_closed_port()}/v1")

    with pytest.raises(ModelUnavailableError) as raised:
        await _collect(model)

    assert [(a.model, a.error) for a in raised.value.attempts] == [
        ("a", "APIConnectionError"),
        ("b", "APIConnectionError"),
    ]


def _local_model(
    base_url: str,
    *,
    retry_budget_seconds: float = 5.0,
    installed_problem: str | None = None,
    may_come_back: bool = True,
) -> LocalChatModel:
    return LocalChatModel(
        installed_problem=installed_problem,
        may_come_back=lambda: may_come_back,
        provider_name="local",
        base_url=base_url,
        api_key=None,
        models=[ModelSpec(name="local")],
        timeout_seconds=5,
        retry_budget_seconds=retry_budget_seconds,
    )


async def test_the_local_model_is_waited_for_while_its_server_restarts() -> None:
    """A Retry pressed just after a crash gets the reply once the supervisor is done."""
    port = _closed_port()
    model = _local_model(f"http://127.0.0.1:{port}/v1")
    restarted = FakeOpenAIServer({"local": ModelScript(reply="Back again.")}, port=port)

    async def restart_later() -> None:
        await asyncio.sleep(0.6)
        async with restarted.serve():
            await asyncio.sleep(5)

    restart = asyncio.create_task(restart_later())
    try:
        started = time.monotonic()
        deltas, end = await _collect(model)
        waited = time.monotonic() - started
    finally:
        restart.cancel()
        await asyncio.gather(restart, return_exceptions=True)
        await model.aclose()

    assert "".join(deltas) == "Back again." and end.model == "local"
    assert waited >= 0.5
    assert restarted.requests["local"] == 1


async def test_the_local_model_is_waited_for_while_it_loads_its_weights(
    server: FakeOpenAIServer,
) -> None:
    # llama-server answers 503 until its weights are loaded.
    server.register("local", ModelScript(reply="Loaded.", status_code=503, status_times=3))
    model = _local_model(server.base_url)
    try:
        deltas, _ = await _collect(model)
    finally:
        await model.aclose()

    assert "".join(deltas) == "Loaded."
    assert server.requests["local"] == 4


async def test_a_local_model_that_stays_down_fails_once_the_budget_is_spent() -> None:
    model = _local_model(f"http://127.0.0.1:{_closed_port()}/v1", retry_budget_seconds=0.6)
    try:
        started = time.monotonic()
        with pytest.raises(ModelUnavailableError) as raised:
            await _collect(model)
        waited = time.monotonic() - started
    finally:
        await model.aclose()

    assert waited >= 0.5
    # Polled several times, reported once.
    assert [(a.model, a.error) for a in raised.value.attempts] == [("local", "APIConnectionError")]


@pytest.mark.parametrize(
    ("script", "options"),
    [
        # Not installed: nothing will come back.
        (ModelScript(status_code=503, status_times=1), {"installed_problem": "not installed"}),
        # Its supervisor's last restart failed: the next try is a while off.
        (ModelScript(status_code=503, status_times=1), {"may_come_back": False}),
        # It dropped the request: a server that died of a request would die of it again,
        # and take the other replies in progress with it.
        (ModelScript(drop_after_tokens=0), {}),
    ],
    ids=["not-installed", "restart-failed", "request-dropped"],
)
async def test_a_local_model_is_not_waited_for_when_it_will_not_come_back(
    server: FakeOpenAIServer, script: ModelScript, options: dict[str, Any]
) -> None:
    server.register("local", script)
    model = _local_model(server.base_url, **options)
    try:
        with pytest.raises(ModelUnavailableError):
            await _collect(model)
    finally:
        await model.aclose()

    assert server.requests["local"] == 1


async def test_a_remote_model_refusing_connections_is_not_polled(
    make_model: MakeModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float | None] = []
    budget_wait = _RetryBudget.wait

    async def recording(self: _RetryBudget, seconds: float | None) -> bool:
        waits.append(seconds)
        return await budget_wait(self, seconds)

    monkeypatch.setattr(_RetryBudget, "wait", recording)
    model = make_model("a", "b", base_url=f"http://127.0.0.1:{_closed_port()}/v1")

    with pytest.raises(ModelUnavailableError):
        await _collect(model)

    assert waits == [None, None]  # one try each, no wait asked for


async def test_a_remote_model_answering_503_is_not_polled(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(status_code=503, status_times=1))

    with pytest.raises(ModelUnavailableError):
        await _collect(make_model("a"))

    assert server.requests["a"] == 1


async def test_stream_falls_back_on_first_token_timeout(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("slow", ModelScript(first_token_delay_seconds=5))
    server.register("b")

    started = time.monotonic()
    _, end = await _collect(
        make_model(ModelSpec(name="slow", first_token_timeout_seconds=0.2), "b")
    )

    assert time.monotonic() - started < 1.0
    assert end.model == "b"
    await _eventually(lambda: server.disconnects["slow"] == 1)


async def test_stream_total_timeout_after_first_token_raises_stream_error(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(reply=REPLY, per_token_delay_seconds=0.15))
    server.register("b")
    deltas: list[str] = []

    with pytest.raises(ModelTimedOutError, match="total timeout") as raised:
        await _collect(make_model(ModelSpec(name="a", total_timeout_seconds=0.4), "b"), deltas)
    # Said as it is: a retry as it stands would run out of time again.
    assert raised.value.code == "model_timed_out" and "shorter" in raised.value.public_message

    # Tokens come every 0.15 s, so the 0.4 s budget ends after about two; a busy
    # machine may deliver fewer. What matters: the text so far, then the error.
    assert deltas and "".join(deltas) == " ".join(REPLY.split(" ")[: len(deltas)]) + " "
    assert len(deltas) <= 2
    assert server.requests["b"] == 0


async def test_stream_closed_early_releases_the_server_stream(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(reply=REPLY * 5, per_token_delay_seconds=0.05))
    stream = make_model("a").stream(PROMPT)

    first = await anext(stream)
    async with asyncio.timeout(1):
        await stream.aclose()

    assert first == StreamDelta("Virtue ")
    await _eventually(lambda: server.disconnects["a"] == 1)


async def test_stream_cancelled_consumer_releases_the_server_stream(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(reply=REPLY * 5, per_token_delay_seconds=0.05))
    model = make_model("a")
    received = asyncio.Event()

    async def consume() -> None:
        async for _ in model.stream(PROMPT):
            received.set()

    task = asyncio.create_task(consume())
    await received.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    await _eventually(lambda: server.disconnects["a"] == 1)


async def test_stream_works_with_server_in_thread(make_model: MakeModel) -> None:
    server = FakeOpenAIServer({"a": ModelScript(reply="From a thread.")})
    with server.run_in_thread():
        deltas, _ = await _collect(make_model("a", base_url=server.base_url))

    assert "".join(deltas) == "From a thread."


async def test_complete_returns_text_and_usage(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(reply=REPLY))

    completion = await make_model(ModelSpec(name="a", temperature=0.1)).complete(
        PROMPT, max_tokens=50
    )

    assert completion.text == REPLY
    assert completion.model == "a"
    assert (completion.prompt_tokens, completion.completion_tokens) == (6, 10)
    body = server.last_request["a"]
    assert (body["stream"], body["temperature"], body["max_tokens"]) == (False, 0.1, 50)
    assert server.last_authorization["a"] == f"Bearer {API_KEY}"


async def test_complete_falls_back_on_server_error(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(status_code=502))
    server.register("b", ModelScript(reply="From b."))

    completion = await make_model("a", "b").complete(PROMPT)

    assert (completion.text, completion.model) == ("From b.", "b")
    assert (server.requests["a"], server.requests["b"]) == (1, 1)


async def test_complete_raises_unavailable_when_every_model_fails(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(status_code=401))

    with pytest.raises(ModelUnavailableError) as raised:
        await make_model("a", "missing").complete(PROMPT)

    assert [a.model for a in raised.value.attempts] == ["a", "missing"]


async def test_failed_attempts_are_logged_without_secrets(
    server: FakeOpenAIServer, make_model: MakeModel
) -> None:
    server.register("a", ModelScript(status_code=500))
    server.register("b")

    with capture_logs() as logs:
        await _collect(make_model("a", "missing", "b"))

    failures = [entry for entry in logs if entry["event"] == "chat_model_attempt_failed"]
    assert [(f["model"], f["status"], f["error_type"]) for f in failures] == [
        ("a", 500, "InternalServerError"),
        ("missing", 404, "NotFoundError"),
    ]
    text = repr(logs)
    assert API_KEY not in text and "virtue" not in text.lower()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": formatdate(0, usegmt=True)}, 0.0),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ],
)
def test_retry_after_seconds_parses_header(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


def test_retry_after_seconds_parses_future_http_date() -> None:
    seconds = retry_after_seconds({"retry-after": formatdate(time.time() + 120, usegmt=True)})
    assert seconds is not None and 100 < seconds <= 121


async def test_stream_reads_what_it_can_of_odd_chunks() -> None:
    """A provider's chunks missing fields or holding odd values: the text and the sane
    metadata come through, the rest is ignored, and the reply is not failed."""
    chunks: list[object] = [
        {"choices": [{"delta": {"role": "assistant"}}]},  # no id, no model, no content
        None,
        ["not", "an", "object"],
        {"model": "served/m", "choices": [{"delta": {"content": "Know "}}, "odd"]},
        {"choices": [{"delta": {"content": 42}}, {"delta": {"content": "thyself"}}]},
        {"choices": "none", "usage": {"prompt_tokens": 7, "completion_tokens": True}},
        {"choices": [{"delta": {}, "finish_reason": "stop"}], "model": 3},
        {"choices": [], "usage": {"prompt_tokens": 7.5, "completion_tokens": 2}},
    ]

    async def odd_provider(request: Request) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/chat/completions", odd_provider, methods=["POST"])])
    async with serve_app(app) as url:
        model = OpenAICompatibleChatModel(
            provider_name="test",
            base_url=f"{url}/v1",
            api_key=API_KEY,
            models=[ModelSpec(name="m")],
            timeout_seconds=5,
        )
        try:
            deltas, end = await _collect(model)
        finally:
            await model.aclose()

    assert "".join(deltas) == "Know thyself"
    # An odd count never replaces a sane one reported before it.
    assert end == StreamEnd(
        model="served/m", prompt_tokens=7, completion_tokens=2, finish_reason="stop"
    )


async def test_a_server_without_a_key_gets_a_placeholder_bearer(server: FakeOpenAIServer) -> None:
    """Local OpenAI-compatible servers need no key; the client still sends a header."""
    server.register("a")
    model = OpenAICompatibleChatModel(
        provider_name="test",
        base_url=server.base_url,
        api_key=None,
        models=[ModelSpec(name="a")],
        timeout_seconds=5,
    )
    try:
        await _collect(model)
    finally:
        await model.aclose()
    assert server.last_authorization["a"] == "Bearer not-needed"
