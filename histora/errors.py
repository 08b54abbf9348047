"""Domain errors, defined once and mapped once per adapter (API table, UI message)."""

from __future__ import annotations

import math


class HistoraError(Exception):
    """Base of every error the product raises on purpose.

    ``public_message`` is safe to show to a user; the exception text may hold
    details for logs only.
    """

    code = "error"
    public_message = "Something went wrong."

    def __init__(self, public_message: str | None = None, *, detail: str | None = None) -> None:
        if public_message is not None:
            self.public_message = public_message
        super().__init__(detail or self.public_message)


class NotFoundError(HistoraError):
    code = "not_found"
    public_message = "Not found."


class ForbiddenError(HistoraError):
    code = "forbidden"
    public_message = "You are not allowed to do that."


class UnauthorizedError(HistoraError):
    code = "unauthorized"
    public_message = "Please sign in."


class QuotaExceededError(HistoraError):
    code = "quota_exceeded"
    public_message = "You have run out of credits."


class RateLimitedError(HistoraError):
    code = "rate_limited"
    public_message = "Too many requests. Please wait a moment and try again."

    def __init__(
        self, public_message: str | None = None, *, retry_after: int = 1, detail: str | None = None
    ) -> None:
        if public_message is None:  # say how long, as Retry-After does for programs
            public_message = f"Too many requests. Please try again in {_wait(retry_after)}."
        super().__init__(public_message, detail=detail)
        self.retry_after = retry_after


def _wait(seconds: int) -> str:
    if seconds < 120:
        return "1 second" if seconds <= 1 else f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"  # never less than Retry-After says


class InvalidInputError(HistoraError):
    code = "invalid_input"
    public_message = "The request is not valid."


class FileTooLargeError(InvalidInputError):
    code = "file_too_large"
    public_message = "This file is too large."


class UnsupportedFileError(InvalidInputError):
    """The content is not one of the accepted types (decided by its bytes, not its name)."""

    code = "unsupported_file"
    public_message = "This file type is not supported. Upload a PDF, DOCX, TXT or Markdown file."


class UnreadableFileError(InvalidInputError):
    """The file claims a supported type but cannot be read safely (damaged, encrypted, ...)."""

    code = "unreadable_file"
    public_message = "Histora could not read this file. It may be damaged."


class ConflictError(HistoraError):
    code = "conflict"
    public_message = "That conflicts with existing data."


class ProviderError(HistoraError):
    code = "provider_unavailable"
    public_message = "A service Histora depends on is unavailable. Please try again shortly."


class ConfigurationError(HistoraError):
    """Raised when a setting is missing or invalid; names the variable to set."""

    code = "configuration_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
