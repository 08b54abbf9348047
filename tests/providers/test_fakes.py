"""The scripted FakeChatModel that service and API tests stand on."""

from __future__ import annotations

import asyncio

import pytest

from histora.providers.chat_types import (
    ModelSpec,
    ModelStreamError,
    ModelUnavailableError,
    PromptMessage,
    StreamDelta,
    StreamEnd,
    StreamEvent,
)
from histora.providers.fakes import FakeChatModel

PROMPT = [PromptMessage(role="user", content="Who are you?")]


async def _events(model: FakeChatModel, sink: list[StreamEvent] | None = None) -> list[StreamEvent]:
    events = [] if sink is None else sink
    async for event in model.stream(PROMPT):
        events.append(event)
    return events


async def test_stream_yields_reply_in_chunks_then_end() -> None:
    model = FakeChatModel(reply="Hello there", chunk_size=4, prompt_tokens=3, completion_tokens=2)

    events = await _events(model)

    assert events == [
        StreamDelta("Hell"),
        StreamDelta("o th"),
        StreamDelta("ere"),
        StreamEnd(model="fake-model", prompt_tokens=3, completion_tokens=2, finish_reason="stop"),
    ]


async def test_stream_records_messages_at_call_time() -> None:
    model = FakeChatModel()

    model.stream(PROMPT)  # never iterated

    assert model.calls == [PROMPT]


async def test_stream_before_first_token_failure_raises_unavailable() -> None:
    model = FakeChatModel(fail_before_first_token=True, models=["a", "b"])
    events: list[StreamEvent] = []

    with pytest.raises(ModelUnavailableError) as raised:
        await _events(model, events)

    assert events == []
    assert [attempt.model for attempt in raised.value.attempts] == ["a", "b"]


async def test_stream_after_chars_failure_keeps_partial_text() -> None:
    model = FakeChatModel(reply="Hello there", chunk_size=4, fail_after_chars=6)
    events: list[StreamEvent] = []

    with pytest.raises(ModelStreamError):
        await _events(model, events)

    assert events == [StreamDelta("Hell"), StreamDelta("o ")]


async def test_stream_with_delay_can_be_cancelled() -> None:
    model = FakeChatModel(reply="x" * 100, chunk_size=1, delay_seconds=0.05)
    events: list[StreamEvent] = []
    task = asyncio.create_task(_events(model, events))
    await asyncio.sleep(0.12)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert 1 <= len(events) < 10


async def test_replies_queue_serves_calls_in_order_then_default() -> None:
    model = FakeChatModel(reply="default", replies=["summary", "answer"])

    summary = await model.complete(PROMPT)
    answer = await _events(model)
    later = await model.complete(PROMPT)

    assert summary.text == "summary" and summary.model == "fake-model"
    assert "".join(e.text for e in answer if isinstance(e, StreamDelta)) == "answer"
    assert later.text == "default"
    assert len(model.calls) == 3


async def test_complete_before_first_token_failure_raises_unavailable() -> None:
    model = FakeChatModel(fail_before_first_token=True)

    with pytest.raises(ModelUnavailableError):
        await model.complete(PROMPT)

    assert model.calls == [PROMPT]


async def test_models_accepts_names_and_specs() -> None:
    spec = ModelSpec(name="b", context_window=2048)

    model = FakeChatModel(models=["a", spec])

    assert model.models == [ModelSpec(name="a"), spec]
    assert FakeChatModel().models == [ModelSpec(name="fake-model")]


async def test_check_health_follows_healthy_flag() -> None:
    model = FakeChatModel()
    assert (await model.check_health()).ok

    model.healthy = False

    health = await model.check_health()
    assert not health.ok and health.provider == "fake"
