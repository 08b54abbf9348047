"""Rate limits for sign-in, registration, token refresh and chat, on ``limits``' async API.

Storage is in memory by default (counts per process) and Redis when
``HISTORA_REDIS_URL`` is set (shared by every worker).

Strategy: moving window. It is exact, with no double burst at a window edge the
way a fixed window allows (10/minute could let 20 guesses through across a
minute boundary), and its cost, one entry per allowed hit, is small for limits
this low. Hits over the limit are not recorded, so a blocked caller is free
again once its oldest allowed hit leaves the window.

A storage failure refuses the request (``ProviderError``): these limits guard
password guessing, so failing open would switch the guard off.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from histora.errors import ConfigurationError, ProviderError, RateLimitedError
from histora.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool

log = structlog.get_logger(__name__)

DEFAULT_KEY_PREFIX = "histora-limits"
_REDIS_SCHEMES = {"redis": "async+redis", "rediss": "async+rediss", "unix": "async+redis+unix"}


def async_storage_uri(url: str) -> str:
    """``redis://...`` (as set for the app) to the scheme ``limits.aio`` expects."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.startswith("async+"):
        return url
    if not sep or scheme not in _REDIS_SCHEMES:
        raise ConfigurationError(
            "HISTORA_REDIS_URL must start with redis://, rediss:// or unix://."
        )
    # unix:///path/to.sock becomes async+redis+unix:///path/to.sock, as limits expects.
    return f"{_REDIS_SCHEMES[scheme]}://{rest}"


def _redis_py_url(async_uri: str) -> str:
    """``async+redis+unix:///x`` -> ``unix:///x``; ``async+redis(s)://`` -> ``redis(s)://``."""
    url = async_uri.removeprefix("async+")
    return "unix" + url.removeprefix("redis+unix") if url.startswith("redis+unix") else url


class RateLimiter:
    """Counts hits per (limit, key) and refuses the ones over the limit."""

    def __init__(self, storage_uri: str = "memory://", *, key_prefix: str = DEFAULT_KEY_PREFIX):
        self._storage: Storage
        self._redis_pool: ConnectionPool | None = None
        if storage_uri.startswith("memory://"):
            self._storage = MemoryStorage()
        else:
            # redis-py (installed for Reflex's Redis state manager), not limits'
            # default coredis; imported here so memory mode does not need it.
            from redis.asyncio import ConnectionPool

            storage_uri_async = async_storage_uri(storage_uri)
            # Our own pool, so ``aclose`` can release its connections.
            self._redis_pool = ConnectionPool.from_url(_redis_py_url(storage_uri_async))
            options: dict[str, Any] = {
                "implementation": "redispy",
                "key_prefix": key_prefix,
                "connection_pool": self._redis_pool,
            }
            # wrap_exceptions: every Redis failure arrives as limits' StorageError.
            self._storage = RedisStorage(storage_uri_async, wrap_exceptions=True, **options)
        self._strategy = MovingWindowRateLimiter(self._storage)
        self._items: dict[str, RateLimitItem] = {}

    def _item(self, limit: str) -> RateLimitItem:
        item = self._items.get(limit)
        if item is None:
            try:
                item = parse(limit)
            except ValueError as exc:
                raise ConfigurationError(
                    f"Rate limit {limit!r} is not valid: use the form '10/minute' "
                    "(see the HISTORA_*_RATE_LIMIT settings)."
                ) from exc
            self._items[limit] = item
        return item

    async def hit(self, limit: str, *key_parts: str) -> None:
        """Count one hit for ``key_parts`` (e.g. ``"login-ip", ip``); raise when over ``limit``.

        ``RateLimitedError.retry_after`` is the whole seconds until a slot frees up.
        """
        item = self._item(limit)
        try:
            if await self._strategy.hit(item, *key_parts):
                return
            stats = await self._strategy.get_window_stats(item, *key_parts)
        except StorageError as exc:
            log.error("rate_limit.storage_failed", error=type(exc.storage_error).__name__)
            raise ProviderError(detail="rate limit storage unavailable") from exc
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        log.info("rate_limit.refused", scope=key_parts[0] if key_parts else "", limit=limit)
        raise RateLimitedError(retry_after=retry_after)

    async def reset(self) -> None:
        """Forget every count (tests). On Redis only keys under this limiter's prefix go."""
        try:
            await self._storage.reset()
        except StorageError as exc:
            raise ProviderError(detail="rate limit storage unavailable") from exc

    async def aclose(self) -> None:
        """Release Redis connections (the process exits anyway; tests close explicitly)."""
        if self._redis_pool is not None:
            await self._redis_pool.aclose()


def rate_limiter_for(settings: Settings) -> RateLimiter:
    if settings.redis_url:
        return RateLimiter(settings.redis_url)
    return RateLimiter()
