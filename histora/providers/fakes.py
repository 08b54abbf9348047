"""In-repo fakes of every provider, for tests."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from histora.errors import ConflictError, InvalidInputError, ProviderError, UnauthorizedError
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
from histora.providers.embedders import normalise
from histora.providers.health import ComponentHealth
from histora.providers.identity import (
    BAD_CREDENTIALS,
    EMAIL_TAKEN,
    FIREBASE_MIN_PASSWORD_LENGTH,
    INVALID_EMAIL,
    WEAK_PASSWORD,
    FirebaseClaims,
)
from histora.providers.vector_store import VectorHit, VectorRecord

if TYPE_CHECKING:
    from histora.providers.chat_models import ChatModel
    from histora.providers.embedders import Embedder
    from histora.providers.identity import IdentityProvider
    from histora.providers.vector_store import VectorStore

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
        finish_reason: str = "stop",
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
        self.finish_reason = finish_reason  # "length": as if max tokens cut the reply
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
            finish_reason=self.finish_reason,
        )


class FakeVectorStore:
    """An in-memory VectorStore with Chroma's semantics (brute-force cosine)."""

    def __init__(self, *, healthy: bool = True) -> None:
        self.healthy = healthy
        # (space, scope) -> chunk_id -> (document_id, unit vector)
        self.collections: dict[tuple[str, str], dict[str, tuple[str, NDArray[np.float32]]]] = {}

    @property
    def provider_name(self) -> str:
        return "fake"

    async def check_health(self) -> ComponentHealth:
        detail = "reachable" if self.healthy else "fake vector store is down"
        return ComponentHealth(ok=self.healthy, detail=detail, provider="fake")

    async def add(self, *, space: str, scope: str, records: Sequence[VectorRecord]) -> None:
        self._check_up()
        collection = self.collections.setdefault((space, scope), {})
        for record in records:
            vector = normalise(np.asarray(record.embedding, dtype=np.float32))
            dimensions = {v.shape[0] for _, v in collection.values()}
            if dimensions and vector.shape[0] not in dimensions:
                raise ProviderError(detail=f"dimension {vector.shape[0]} does not fit {space}")
            collection[record.chunk_id] = (record.document_id, vector)

    async def query(
        self, *, space: str, scopes: Sequence[str], embedding: NDArray[np.float32], k: int
    ) -> list[VectorHit]:
        self._check_up()
        query = normalise(np.asarray(embedding, dtype=np.float32))
        hits = [
            VectorHit(chunk_id, document_id, float(np.dot(vector, query)))
            for scope in dict.fromkeys(scopes)
            for chunk_id, (document_id, vector) in self.collections.get((space, scope), {}).items()
        ]
        return sorted(hits, key=lambda hit: (-hit.similarity, hit.chunk_id))[: max(k, 0)]

    async def delete_document(self, *, space: str, scope: str, document_id: str) -> None:
        self._check_up()
        collection = self.collections.get((space, scope), {})
        for chunk_id in [c for c, (doc, _) in collection.items() if doc == document_id]:
            del collection[chunk_id]

    async def count(self, *, space: str, scope: str) -> int:
        self._check_up()
        return len(self.collections.get((space, scope), {}))

    def _check_up(self) -> None:
        if not self.healthy:
            raise ProviderError(detail="fake vector store is down")


_WORD = re.compile(r"[a-z0-9]+")
# fmt: off
_FAKE_STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "did", "for", "from",
    "has", "have", "he", "her", "his", "i", "in", "is", "it", "its", "me", "my", "no",
    "not", "of", "on", "or", "our", "she", "so", "that", "the", "their", "them", "they",
    "this", "to", "was", "we", "were", "what", "when", "which", "who", "will", "with",
    "you", "your",
})
# fmt: on
_FAKE_SUFFIXES = ("ing", "ed", "es", "er", "ly", "y", "s")


def fake_stem(word: str) -> str:
    """A crude stemmer: strips common suffixes while 3+ letters remain.

    "answer", "answers" and "answered" all give "answ"; "lives" and "living" give "liv".
    """
    stripped = True
    while stripped:
        stripped = False
        for suffix in _FAKE_SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word, stripped = word[: -len(suffix)], True
                break
    return word


class FakeEmbedder:
    """A deterministic Embedder with no model: a hashed bag of stemmed words.

    Each non-stopword adds 1 to a bucket chosen by a stable hash of its stem, so texts
    that share words are similar and texts that share none are (nearly) orthogonal.
    A text with no words embeds as the zero vector. ``calls`` records every batch.
    """

    def __init__(self, *, dimension: int = 64, healthy: bool = True) -> None:
        self._dimension = dimension
        self.healthy = healthy
        self.calls: list[list[str]] = []

    @property
    def name(self) -> str:
        return "fake-hashed-words"

    @property
    def provider_name(self) -> str:
        return "fake"

    @property
    def dimension(self) -> int:
        return self._dimension

    def vector(self, text: str) -> NDArray[np.float32]:
        counts = np.zeros(self._dimension, dtype=np.float32)
        for word in _WORD.findall(text.lower()):
            if word not in _FAKE_STOPWORDS:
                digest = hashlib.blake2b(fake_stem(word).encode(), digest_size=8).digest()
                counts[int.from_bytes(digest, "big") % self._dimension] += 1.0
        return normalise(counts)

    async def embed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self._check_up(texts)
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        return np.stack([self.vector(text) for text in texts])

    async def embed_query(self, text: str) -> NDArray[np.float32]:
        self._check_up([text])
        return self.vector(text)

    async def check_health(self) -> ComponentHealth:
        detail = "ready" if self.healthy else "fake embedder is down"
        return ComponentHealth(ok=self.healthy, detail=detail, provider="fake")

    def _check_up(self, texts: Sequence[str]) -> None:
        self.calls.append(list(texts))
        if not self.healthy:
            raise ProviderError(detail="fake embedder is down")


if TYPE_CHECKING:
    # mypy proves the fake keeps up with the Protocol it stands in for.
    _fake_chat_model: ChatModel = FakeChatModel()
    _fake_vector_store: VectorStore = FakeVectorStore()
    _fake_embedder: Embedder = FakeEmbedder()


FAKE_TOKEN_PREFIX = "fake-id-token:"  # noqa: S105 - a token format, not a secret


@dataclass
class FakeAccount:
    uid: str
    email: str
    password: str
    display_name: str | None = None
    email_verified: bool = False
    disabled: bool = False


class FakeIdentityProvider:
    """Firebase Auth in memory: accounts, "fake-id-token:<uid>" tokens, and the refusals.

    Tokens stay valid until the account is disabled or its tokens are revoked; like
    Firebase, a later sign-in issues a token that works again after a revocation.
    """

    def __init__(self) -> None:
        self.accounts: dict[str, FakeAccount] = {}
        self._revoked: set[str] = set()
        self._uids = itertools.count(1)

    def add_account(
        self,
        email: str,
        password: str = "fake password",  # noqa: S107 - a test default
        *,
        display_name: str | None = None,
        email_verified: bool = False,
    ) -> FakeAccount:
        """An account made outside the app (the console, Google sign-in, ...)."""
        if self._by_email(email) is not None:
            raise ConflictError(EMAIL_TAKEN)
        account = FakeAccount(
            uid=f"fake-uid-{next(self._uids)}",
            email=email.strip().lower(),
            password=password,
            display_name=display_name,
            email_verified=email_verified,
        )
        self.accounts[account.uid] = account
        return account

    def token_for(self, uid: str) -> str:
        """A fresh ID token, as a client-side sign-in (e.g. with Google) would get."""
        self._revoked.discard(uid)
        return f"{FAKE_TOKEN_PREFIX}{uid}"

    def disable(self, uid: str) -> None:
        self.accounts[uid].disabled = True

    def revoke_tokens(self, uid: str) -> None:
        self._revoked.add(uid)

    async def verify_id_token(self, id_token: str) -> FirebaseClaims:
        uid = id_token.removeprefix(FAKE_TOKEN_PREFIX)
        account = self.accounts.get(uid) if uid != id_token else None
        if account is None or account.disabled or uid in self._revoked:
            raise UnauthorizedError()
        return FirebaseClaims(
            uid=account.uid,
            email=account.email,
            email_verified=account.email_verified,
            display_name=account.display_name,
        )

    async def sign_in_with_password(self, email: str, password: str) -> str:
        account = self._by_email(email)
        if account is None or account.password != password or account.disabled:
            raise UnauthorizedError(BAD_CREDENTIALS)
        return self.token_for(account.uid)

    async def sign_up(self, email: str, password: str, display_name: str) -> str:
        if "@" not in email:
            raise InvalidInputError(INVALID_EMAIL)
        if len(password) < FIREBASE_MIN_PASSWORD_LENGTH:
            raise InvalidInputError(WEAK_PASSWORD)
        account = self.add_account(email, password, display_name=display_name)
        return self.token_for(account.uid)

    def _by_email(self, email: str) -> FakeAccount | None:
        wanted = email.strip().lower()
        return next((a for a in self.accounts.values() if a.email == wanted), None)


if TYPE_CHECKING:
    _fake_identity: IdentityProvider = FakeIdentityProvider()
