"""In-repo fakes of every provider, for tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING

from histora.providers.chat_types import (
    Completion,
    ModelAttempt,
    ModelSpec,
    ModelStreamError,
    ModelUnavailableError,
    PromptMessage,
    StreamDelta,
    StreamEnd,
    StreamEvent,
)
from histora.providers.health import ComponentHealth

if TYPE_CHECKING:
    from histora.providers.chat_models import ChatModel

_SCRIPTED_FAILURE = "scripted failure"


class FakeChatModel:
    """A scripted ChatModel: replies come in ``chunk_size``-character deltas.

    ``replies`` is a queue: each call (stream or complete) takes the next one, and
    ``reply`` once it is empty. ``fail_before_first_token`` makes every call raise
    ``ModelUnavailableError``; ``fail_after_chars`` makes streams raise
    ``ModelStreamError`` after that many characters (a non-streamed call has no
    "after", so ``complete`` ignores it). ``calls`` records each call's messages.
    """

    def __init__(
        self,
        *,
        healthy: bool = True,
        reply: str = "Hello from the fake model.",
        replies: Sequence[str] | None = None,
        models: Sequence[str | ModelSpec] | None = None,
        chunk_size: int = 4,
        delay_seconds: float = 0.0,
        fail_before_first_token: bool = False,
        fail_after_chars: int | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.healthy = healthy
        self.reply = reply
        self.replies = list(replies or [])
        self._models = [
            model if isinstance(model, ModelSpec) else ModelSpec(name=model)
            for model in models or ["fake-model"]
        ]
        self.chunk_size = chunk_size
        self.delay_seconds = delay_seconds
        self.fail_before_first_token = fail_before_first_token
        self.fail_after_chars = fail_after_chars
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.calls: list[list[PromptMessage]] = []

    @property
    def provider_name(self) -> str:
        return "fake"

    @property
    def models(self) -> list[ModelSpec]:
        return list(self._models)

    def stream(
        self, messages: Sequence[PromptMessage], *, max_tokens: int | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        # Recorded at call time, like a real request, even if nobody iterates.
        return self._stream(self._take_call(messages))

    async def complete(
        self, messages: Sequence[PromptMessage], *, max_tokens: int | None = None
    ) -> Completion:
        reply = self._take_call(messages)
        if self.fail_before_first_token:
            raise self._unavailable()
        return Completion(
            text=reply,
            model=self._model_name,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
        )

    async def check_health(self) -> ComponentHealth:
        detail = "reachable" if self.healthy else "fake model is down"
        return ComponentHealth(ok=self.healthy, detail=detail, provider="fake")

    @property
    def _model_name(self) -> str:
        return self._models[0].name

    def _take_call(self, messages: Sequence[PromptMessage]) -> str:
        self.calls.append(list(messages))
        return self.replies.pop(0) if self.replies else self.reply

    def _unavailable(self) -> ModelUnavailableError:
        return ModelUnavailableError(
            [ModelAttempt(model=spec.name, error=_SCRIPTED_FAILURE) for spec in self._models]
        )

    async def _stream(self, reply: str) -> AsyncGenerator[StreamEvent, None]:
        if self.fail_before_first_token:
            raise self._unavailable()
        failing = self.fail_after_chars is not None
        text = reply[: self.fail_after_chars] if failing else reply
        for start in range(0, len(text), self.chunk_size):
            # Always yields to the loop, so consumers can be cancelled mid-stream.
            await asyncio.sleep(self.delay_seconds)
            yield StreamDelta(text[start : start + self.chunk_size])
        if failing:
            raise ModelStreamError(self._model_name, _SCRIPTED_FAILURE)
        yield StreamEnd(
            model=self._model_name,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            finish_reason="stop",
        )


class FakeVectorStore:
    def __init__(self, *, healthy: bool = True) -> None:
        self.healthy = healthy

    @property
    def provider_name(self) -> str:
        return "fake"

    async def check_health(self) -> ComponentHealth:
        detail = "reachable" if self.healthy else "fake vector store is down"
        return ComponentHealth(ok=self.healthy, detail=detail, provider="fake")


if TYPE_CHECKING:
    # mypy proves the fake keeps up with the Protocol it stands in for.
    _fake_chat_model: ChatModel = FakeChatModel()
