"""Chat model providers behind one Protocol.

The same OpenAI-compatible client talks to OpenRouter, any compatible endpoint, and
the embedded local model server; only the base URL, key and model names differ.

Each call walks a fallback chain of models. Until the first piece of text arrives
nothing has been shown to the user, so any failure moves on to the next model (a 429
with a short Retry-After first earns one retry of the same model; the embedded local
model, which has nothing to fall back to, is waited for while it restarts). Once text has
streamed, a failure is final: it raises ``ModelStreamError`` and the caller keeps the
partial reply, since restarting on another model would contradict what was shown.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Protocol, TypeVar

import httpx
import openai
import structlog
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from histora.providers.chat_types import (
    Completion,
    ModelAttempt,
    ModelSpec,
    ModelStreamError,
    ModelTimedOutError,
    ModelUnavailableError,
    PromptMessage,
    StreamDelta,
    StreamEnd,
    StreamEvent,
)
from histora.providers.health import ComponentHealth

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

# What a provider call can fail with: transport errors and timeouts (the SDK wraps its
# HTTP library's errors; httpx is listed for safety), HTTP statuses, error events in the
# stream (openai.APIError), and malformed payloads (ValueError: bad JSON or schema).
_PROVIDER_ERRORS = (openai.OpenAIError, httpx.HTTPError, TimeoutError, ValueError)


class ChatModel(Protocol):
    """A source of chat completions."""

    @property
    def provider_name(self) -> str: ...

    @property
    def models(self) -> list[ModelSpec]:
        """The fallback chain, in order."""
        ...

    def stream(
        self, messages: Sequence[PromptMessage], *, max_tokens: int | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        """Text deltas, then exactly one ``StreamEnd``.

        An async generator rather than a bare iterator, so callers can close it
        promptly (``contextlib.aclosing``) and free the HTTP stream when they stop early.

        Raises ``ModelUnavailableError`` when every model failed before its first
        token, ``ModelStreamError`` when the answering model failed after it.
        """
        ...

    async def complete(
        self, messages: Sequence[PromptMessage], *, max_tokens: int | None = None
    ) -> Completion:
        """The whole reply at once; raises ``ModelUnavailableError`` when every model failed."""
        ...

    async def check_health(self) -> ComponentHealth: ...


class _AttemptFailed(Exception):
    """One model failed before producing text; the chain may move on."""

    def __init__(
        self,
        error: str,
        *,
        error_type: str,
        status: int | None = None,
        retry_after: float | None = None,
        unreachable: bool = False,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.error_type = error_type
        self.status = status
        self.retry_after = retry_after
        # The connection was refused: nothing listens at the address (yet). A connection
        # dropped after it was made is not this: the server may have died of the request.
        self.unreachable = unreachable


def _attempt_failed(exc: BaseException, *, timeout_detail: str) -> _AttemptFailed:
    error_type = type(exc).__name__
    if isinstance(exc, openai.APIStatusError):
        # Every status moves on: 5xx and 429 are transient, and another 4xx (400, 401,
        # 403, 404, 422) is usually one misconfigured model name, which must not take
        # the whole chat down while the rest of the chain works.
        status = exc.status_code
        retry_after = retry_after_seconds(exc.response.headers) if status == 429 else None
        return _AttemptFailed(
            f"HTTP {status} ({error_type})",
            error_type=error_type,
            status=status,
            retry_after=retry_after,
        )
    if isinstance(exc, TimeoutError):
        return _AttemptFailed(timeout_detail, error_type=error_type)
    if isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIConnectionError):
        return _AttemptFailed(f"error event in the stream (code {exc.code})", error_type=error_type)
    return _AttemptFailed(error_type, error_type=error_type, unreachable=_refused(exc))


def _refused(exc: BaseException) -> bool:
    """Whether the connection was refused (the SDK wraps the OS error a few levels down)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a 429 asks for: Retry-After as seconds or an HTTP date (or retry-after-ms)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(0.0, value)
    header = headers.get("retry-after")
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


class _RetryBudget:
    """Seconds one call may spend sleeping on Retry-After, shared by every model."""

    def __init__(self, seconds: float) -> None:
        self._remaining = seconds

    async def wait(self, seconds: float | None) -> bool:
        if seconds is None or seconds > self._remaining:
            return False
        self._remaining -= seconds
        await asyncio.sleep(seconds)
        return True


@dataclass
class _OpenedStream:
    """A streaming response that produced its first text, or ended without any."""

    response: openai.AsyncStream[object]
    model: str
    deadline: float  # event-loop time by which the whole reply must be done
    first_text: str = ""
    ended: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None

    def absorb(self, chunk: object) -> str:
        """Take the chunk's metadata; return its text.

        Chunks arrive as the parsed JSON of each event, read here field by field: the
        SDK's typed chunk objects cost about 0.15 ms each to build (every token of every
        reply), and a provider's chunk that lacks a field or has an odd one is read as
        far as it makes sense instead of failing the reply.
        """
        if not isinstance(chunk, Mapping):
            return ""
        if isinstance(model := chunk.get("model"), str) and model:
            self.model = model
        if isinstance(usage := chunk.get("usage"), Mapping):
            # A count once reported stays, unless a later chunk reports a sane one.
            prompt_tokens = _token_count(usage.get("prompt_tokens"))
            completion_tokens = _token_count(usage.get("completion_tokens"))
            self.prompt_tokens = self.prompt_tokens if prompt_tokens is None else prompt_tokens
            self.completion_tokens = (
                self.completion_tokens if completion_tokens is None else completion_tokens
            )
        text = ""
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, Mapping):
                continue
            delta = choice.get("delta")
            if isinstance(delta, Mapping) and isinstance(content := delta.get("content"), str):
                text += content
            if isinstance(reason := choice.get("finish_reason"), str) and reason:
                self.finish_reason = reason
        return text

    def end(self) -> StreamEnd:
        return StreamEnd(
            model=self.model,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            finish_reason=self.finish_reason,
        )


def _token_count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# What _next_chunk returns once the stream has ended (a chunk may be any JSON, null too).
_STREAM_END = object()
# How often a send looks again for the local model server while it restarts.
RESTART_POLL_SECONDS = 0.25


async def _next_chunk(response: openai.AsyncStream[object], deadline: float) -> object:
    # The deadline covers only the wait for the server, never the consumer's own work.
    async with asyncio.timeout_at(deadline):
        return await anext(response, _STREAM_END)


def _to_openai_messages(messages: Sequence[PromptMessage]) -> list[ChatCompletionMessageParam]:
    converted: list[ChatCompletionMessageParam] = []
    for message in messages:
        if message.role == "system":
            converted.append({"role": "system", "content": message.content})
        elif message.role == "user":
            converted.append({"role": "user", "content": message.content})
        else:
            converted.append({"role": "assistant", "content": message.content})
    return converted


class OpenAICompatibleChatModel:
    """Any endpoint speaking the OpenAI chat-completions API, with a fallback chain.

    ``timeout_seconds`` is the HTTP client's default; each request uses its
    ``ModelSpec`` timeouts. The SDK's own retries are off: the chain decides.
    """

    def __init__(
        self,
        *,
        provider_name: str,
        base_url: str,
        api_key: str | None,
        models: list[ModelSpec],
        timeout_seconds: float,
        health_timeout_seconds: float = 3.0,
        retry_budget_seconds: float = 10.0,
    ) -> None:
        self._provider_name = provider_name
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._models = list(models)
        self._timeout_seconds = timeout_seconds
        self._health_timeout_seconds = health_timeout_seconds
        self._retry_budget_seconds = retry_budget_seconds
        self._openai: openai.AsyncOpenAI | None = None

    @property
    def provider_name(self) -> str:
        return self._provider_name

    @property
    def models(self) -> list[ModelSpec]:
        return list(self._models)

    @property
    def base_url(self) -> str:
        return self._base_url

    def _client(self) -> openai.AsyncOpenAI:
        if self._openai is None:
            self._openai = openai.AsyncOpenAI(
                base_url=self._base_url,
                api_key=self._api_key or "not-needed",
                max_retries=0,
                timeout=self._timeout_seconds,
            )
        return self._openai

    async def aclose(self) -> None:
        """Close the pooled HTTP connections (a later call opens new ones)."""
        if self._openai is not None:
            client, self._openai = self._openai, None
            await client.close()

    async def stream(
        self, messages: Sequence[PromptMessage], *, max_tokens: int | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        payload = _to_openai_messages(messages)
        opened = await self._first_available(
            lambda spec: self._open_stream(spec, payload, max_tokens)
        )
        # Leaving this block, by the end, an error, aclose() or cancellation, closes
        # the HTTP stream at once so the server stops generating.
        async with opened.response:
            if opened.first_text:
                yield StreamDelta(opened.first_text)
            while not opened.ended:
                try:
                    chunk = await _next_chunk(opened.response, opened.deadline)
                except _PROVIDER_ERRORS as exc:
                    raise self._stream_failed(opened.model, exc) from exc
                if chunk is _STREAM_END:
                    break
                if text := opened.absorb(chunk):
                    yield StreamDelta(text)
        yield opened.end()

    def _stream_failed(self, model: str, exc: BaseException) -> ModelStreamError:
        error_type = type(exc).__name__
        log.warning(
            "chat_model_stream_failed",
            provider=self._provider_name,
            model=model,
            error_type=error_type,
        )
        if isinstance(exc, TimeoutError):
            return ModelTimedOutError(model)
        if isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIConnectionError):
            return ModelStreamError(model, f"error event in the stream (code {exc.code})")
        return ModelStreamError(model, error_type)

    async def complete(
        self, messages: Sequence[PromptMessage], *, max_tokens: int | None = None
    ) -> Completion:
        payload = _to_openai_messages(messages)
        return await self._first_available(
            lambda spec: self._complete_one(spec, payload, max_tokens)
        )

    async def _first_available(self, attempt: Callable[[ModelSpec], Awaitable[_T]]) -> _T:
        """Run ``attempt`` down the chain until one model succeeds."""
        attempts: list[ModelAttempt] = []
        budget = _RetryBudget(self._retry_budget_seconds)
        for spec in self._models:
            tries, polls = 0, 0
            while True:
                tries += 1
                try:
                    result = await attempt(spec)
                except _AttemptFailed as failure:
                    poll = self._restart_poll_seconds(failure)
                    # A server polled while it restarts fails alike many times: its
                    # failure is recorded once, and how long it was waited for at the end.
                    if poll is None or polls == 0 or attempts[-1].error != failure.error:
                        attempts.append(ModelAttempt(model=spec.name, error=failure.error))
                        log.warning(
                            "chat_model_attempt_failed",
                            provider=self._provider_name,
                            model=spec.name,
                            error_type=failure.error_type,
                            status=failure.status,
                            retry_after=failure.retry_after,
                        )
                    if poll is not None and await budget.wait(poll):
                        polls += 1
                        continue
                    if poll is None and tries == 1 and await budget.wait(failure.retry_after):
                        continue  # a 429 that said when: once
                    if polls:
                        log.warning(
                            "chat_model_restart_wait_exhausted", model=spec.name, polls=polls
                        )
                    break
                if polls:
                    log.info("chat_model_back_after_restart", model=spec.name, polls=polls)
                return result
        raise ModelUnavailableError(attempts)

    def _restart_poll_seconds(self, failure: _AttemptFailed) -> float | None:
        """How long to wait before looking again for a model being restarted, or None
        when its failure is not that. A remote model is never restarted by this app."""
        return None

    async def _open_stream(
        self,
        spec: ModelSpec,
        messages: list[ChatCompletionMessageParam],
        max_tokens: int | None,
    ) -> _OpenedStream:
        """Start streaming from one model and wait for its first text."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + spec.total_timeout_seconds
        first_deadline = min(started + spec.first_token_timeout_seconds, deadline)
        timeout_detail = f"no first token within {spec.first_token_timeout_seconds:g} s"
        try:
            async with asyncio.timeout_at(first_deadline):
                # The client's generic POST, not ``chat.completions.create``: that one
                # first walks the whole payload through the SDK's parameter transform
                # (about 1.3 ms for a chat prompt, on every turn's path to its first
                # token), which changes nothing in plain string messages. Chunks come
                # back as plain JSON (see ``_OpenedStream.absorb``).
                response = await self._client().post(
                    "/chat/completions",
                    body={
                        "model": spec.name,
                        "messages": messages,
                        "stream": True,
                        "stream_options": {"include_usage": True},
                        **spec.sampling(max_tokens),
                    },
                    # Bearer auth only, as chat.completions.create asks for.
                    options={
                        "timeout": spec.total_timeout_seconds,
                        "security": {"bearer_auth": True},
                    },
                    cast_to=ChatCompletion,
                    stream=True,
                    stream_cls=openai.AsyncStream[object],
                )
        except _PROVIDER_ERRORS as exc:
            raise _attempt_failed(exc, timeout_detail=timeout_detail) from exc
        opened = _OpenedStream(response=response, model=spec.name, deadline=deadline)
        handed_over = False
        try:
            while not opened.first_text and not opened.ended:
                chunk = await _next_chunk(response, first_deadline)
                if chunk is _STREAM_END:
                    opened.ended = True
                else:
                    opened.first_text = opened.absorb(chunk)
            handed_over = True
            return opened
        except _PROVIDER_ERRORS as exc:
            raise _attempt_failed(exc, timeout_detail=timeout_detail) from exc
        finally:
            if not handed_over:  # failed or cancelled: release the connection now
                await response.close()

    async def _complete_one(
        self,
        spec: ModelSpec,
        messages: list[ChatCompletionMessageParam],
        max_tokens: int | None,
    ) -> Completion:
        try:
            async with asyncio.timeout(spec.total_timeout_seconds):
                response = await self._client().chat.completions.create(
                    model=spec.name,
                    messages=messages,
                    stream=False,
                    timeout=spec.total_timeout_seconds,
                    # The same sampling as the stream's, spelled out in the JSON body.
                    extra_body=spec.sampling(max_tokens),
                )
        except _PROVIDER_ERRORS as exc:
            timeout_detail = f"no reply within {spec.total_timeout_seconds:g} s"
            raise _attempt_failed(exc, timeout_detail=timeout_detail) from exc
        text = response.choices[0].message.content if response.choices else None
        usage = response.usage
        return Completion(
            text=text or "",
            model=response.model or spec.name,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

    async def check_health(self) -> ComponentHealth:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            async with httpx.AsyncClient(timeout=self._health_timeout_seconds) as client:
                response = await client.get(f"{self._base_url}/models", headers=headers)
        except httpx.HTTPError as exc:
            return ComponentHealth(
                ok=False,
                detail=f"cannot reach {self._base_url}: {type(exc).__name__}",
                provider=self._provider_name,
            )
        if response.status_code >= 400:
            return ComponentHealth(
                ok=False,
                detail=f"{self._base_url}/models answered HTTP {response.status_code}",
                provider=self._provider_name,
            )
        return ComponentHealth(ok=True, detail="reachable", provider=self._provider_name)


class LocalChatModel(OpenAICompatibleChatModel):
    """The embedded llama-server: healthy only when it is installed and answering.

    There is no other model to fall back to, and when it refuses connections or is
    still loading its weights it is almost always being restarted by its supervisor
    (which looks every second). So a send waits for it, polling within the retry
    budget, rather than failing a user who pressed Retry a moment after a crash;
    unless ``may_come_back`` says the supervisor's last restart failed.
    """

    def __init__(
        self,
        *,
        installed_problem: str | None,
        may_come_back: Callable[[], bool] = lambda: True,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._installed_problem = installed_problem
        self._may_come_back = may_come_back

    def _restart_poll_seconds(self, failure: _AttemptFailed) -> float | None:
        restarting = failure.unreachable or failure.status == HTTPStatus.SERVICE_UNAVAILABLE
        if restarting and self._installed_problem is None and self._may_come_back():
            return RESTART_POLL_SECONDS
        return None

    async def check_health(self) -> ComponentHealth:
        if self._installed_problem:
            return ComponentHealth(
                ok=False, detail=self._installed_problem, provider=self.provider_name
            )
        return await super().check_health()
