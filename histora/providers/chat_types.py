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


# Set from a spec's own fields or by the request itself, never by extra_sampling.
_REQUEST_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "temperature",
        "max_tokens",
        "frequency_penalty",
        "presence_penalty",
    }
)


@dataclass(frozen=True)
class ModelSpec:
    """One model of the fallback chain and its generation settings."""

    name: str
    temperature: float = 0.7
    max_tokens: int = 512
    context_window: int = 8192
    first_token_timeout_seconds: float = 30.0
    total_timeout_seconds: float = 120.0
    # OpenAI's penalties on tokens already in the reply; None leaves the model's default.
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    # Sampling options outside the OpenAI API that this model's server understands, sent
    # as given: llama.cpp's repeat_penalty or dry_multiplier, OpenRouter's
    # repetition_penalty. A tuple of pairs keeps the spec hashable.
    extra_sampling: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        clashes = sorted(_REQUEST_FIELDS.intersection(name for name, _ in self.extra_sampling))
        if clashes:
            raise ValueError(f"extra_sampling cannot set {', '.join(clashes)}")

    def sampling(self, max_tokens: int | None = None) -> dict[str, float | int]:
        """The request's sampling parameters, as the chat completions body spells them."""
        params: dict[str, float | int] = {
            "temperature": self.temperature,
            "max_tokens": max_tokens or self.max_tokens,
        }
        if self.frequency_penalty is not None:
            params["frequency_penalty"] = self.frequency_penalty
        if self.presence_penalty is not None:
            params["presence_penalty"] = self.presence_penalty
        params.update(self.extra_sampling)
        return params


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


class ModelTimedOutError(ModelStreamError):
    """The reply ran past the model's total timeout (a long question on a slow model):
    a retry as it stands would likely run out of time again, so the message says so."""

    code = "model_timed_out"
    public_message = (
        "The reply took longer than the time allowed for one and was stopped there. "
        "A shorter question may help."
    )

    def __init__(self, model: str) -> None:
        super().__init__(model, "not finished within the total timeout")
