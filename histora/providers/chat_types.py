"""Value types shared by chat model providers and the services that use them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from histora.errors import ProviderError

PromptRole = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class PromptMessage:
    role: PromptRole
    content: str


@dataclass(frozen=True)
class ModelSpec:
    """One model of the fallback chain and its generation settings."""

    name: str
    temperature: float = 0.7
    max_tokens: int = 512
    context_window: int = 8192
    first_token_timeout_seconds: float = 30.0
    total_timeout_seconds: float = 120.0


@dataclass(frozen=True)
class StreamDelta:
    """A piece of reply text."""

    text: str


@dataclass(frozen=True)
class StreamEnd:
    """The stream finished normally. Token counts are None when the provider sent none."""

    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


StreamEvent = StreamDelta | StreamEnd


@dataclass(frozen=True)
class Completion:
    """A whole (non-streamed) reply, used for summaries."""

    text: str
    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class ModelAttempt:
    model: str
    error: str


class ModelUnavailableError(ProviderError):
    """Every model of the chain failed before its first token."""

    code = "model_unavailable"
    public_message = "The historical figure cannot answer right now. Please try again shortly."

    def __init__(self, attempts: list[ModelAttempt]) -> None:
        self.attempts = attempts
        summary = "; ".join(f"{a.model}: {a.error}" for a in attempts) or "no models configured"
        super().__init__(detail=f"all models failed before the first token ({summary})")


class ModelStreamError(ProviderError):
    """The model failed after it had started answering; never retried silently."""

    code = "model_stream_failed"
    public_message = "The reply was interrupted. You can retry."

    def __init__(self, model: str, error: str) -> None:
        self.model = model
        super().__init__(detail=f"{model} failed mid-stream: {error}")
