from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from histora.errors import ConfigurationError, ProviderError, RateLimitedError
from histora.services.rate_limits import RateLimiter, async_storage_uri, rate_limiter_for
from histora.settings import Settings

# This machine always runs Redis; a missing server must fail these tests, not skip them.
REDIS_URL = os.environ.get("HISTORA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def _hit_until_refused(limiter: RateLimiter, limit: str, *key: str) -> tuple[int, int]:
    """Hit 20 times; return how many were allowed and the first retry_after."""
    allowed, retry_after = 0, 0
    for _ in range(20):
        try:
            await limiter.hit(limit, *key)
            allowed += 1
        except RateLimitedError as exc:
            retry_after = retry_after or exc.retry_after
    return allowed, retry_after


@pytest.fixture
async def redis_limiter() -> AsyncIterator[RateLimiter]:
    limiter = RateLimiter(REDIS_URL, key_prefix=f"histora-test-{uuid.uuid4().hex}")
    yield limiter
    await limiter.reset()
    await limiter.aclose()


async def test_memory_limit_refuses_after_the_allowance() -> None:
    limiter = RateLimiter()
    allowed, retry_after = await _hit_until_refused(limiter, "10/minute", "login-ip", "1.2.3.4")
    assert allowed == 10
    assert 1 <= retry_after <= 60


async def test_keys_are_counted_separately() -> None:
    limiter = RateLimiter()
    await _hit_until_refused(limiter, "10/minute", "login-ip", "1.2.3.4")
    await limiter.hit("10/minute", "login-ip", "5.6.7.8")
    await limiter.hit("10/minute", "login-account", "1.2.3.4")


async def test_reset_forgets_counts() -> None:
    limiter = RateLimiter()
    await _hit_until_refused(limiter, "2/minute", "k")
    await limiter.reset()
    await limiter.hit("2/minute", "k")


async def test_invalid_limit_names_the_settings() -> None:
    with pytest.raises(ConfigurationError, match="RATE_LIMIT"):
        await RateLimiter().hit("lots", "k")


async def test_redis_limit_refuses_after_the_allowance(redis_limiter: RateLimiter) -> None:
    allowed, retry_after = await _hit_until_refused(redis_limiter, "10/minute", "login-ip", "ip")
    assert allowed == 10
    assert 1 <= retry_after <= 60


async def test_redis_counts_are_shared_between_limiters(redis_limiter: RateLimiter) -> None:
    # Two workers, one Redis: the allowance is for all of them together.
    prefix = redis_limiter._storage.bridge.key_prefix  # type: ignore[attr-defined]
    other_worker = RateLimiter(REDIS_URL, key_prefix=prefix)
    try:
        for _ in range(5):
            await redis_limiter.hit("10/minute", "chat", "user-1")
            await other_worker.hit("10/minute", "chat", "user-1")
        with pytest.raises(RateLimitedError):
            await other_worker.hit("10/minute", "chat", "user-1")
    finally:
        await other_worker.aclose()


async def test_redis_reset_forgets_counts(redis_limiter: RateLimiter) -> None:
    await _hit_until_refused(redis_limiter, "2/minute", "k")
    await redis_limiter.reset()
    await redis_limiter.hit("2/minute", "k")


async def test_unreachable_redis_refuses_rather_than_allowing() -> None:
    limiter = RateLimiter("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(ProviderError):
            await limiter.hit("10/minute", "login-ip", "ip")
    finally:
        await limiter.aclose()


async def test_factory_uses_redis_when_configured(settings: Settings) -> None:
    redis_settings = settings.model_copy(update={"redis_url": REDIS_URL})
    first, second = rate_limiter_for(redis_settings), rate_limiter_for(redis_settings)
    # A fresh key rather than a reset: these limiters share the default prefix.
    key = uuid.uuid4().hex
    try:
        allowed, _ = await _hit_until_refused(first, "3/minute", "factory-test", key)
        assert allowed == 3
        # Counts are shared: the second limiter (another worker) is refused too.
        with pytest.raises(RateLimitedError):
            await second.hit("3/minute", "factory-test", key)
    finally:
        await first.aclose()
        await second.aclose()


async def test_factory_defaults_to_memory(settings: Settings) -> None:
    assert settings.redis_url is None
    first, second = rate_limiter_for(settings), rate_limiter_for(settings)
    await _hit_until_refused(first, "1/minute", "k")
    await second.hit("1/minute", "k")  # memory counts are per limiter (per process)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost:6379/0", "async+redis://localhost:6379/0"),
        ("rediss://:pw@cache:6380/1", "async+rediss://:pw@cache:6380/1"),
        ("unix:///run/redis.sock?db=2", "async+redis+unix:///run/redis.sock?db=2"),
        ("async+redis://localhost:6379", "async+redis://localhost:6379"),
    ],
)
def test_redis_urls_map_to_async_storage(url: str, expected: str) -> None:
    assert async_storage_uri(url) == expected


def test_other_urls_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="HISTORA_REDIS_URL"):
        async_storage_uri("http://localhost:6379")


async def test_a_refusal_says_how_long_to_wait() -> None:
    limiter = RateLimiter()
    await limiter.hit("1/hour", "chat-user", "u1")
    with pytest.raises(RateLimitedError) as refused:
        await limiter.hit("1/hour", "chat-user", "u1")
    # The hour's window has all but a moment to run.
    assert refused.value.public_message == "Too many requests. Please try again in 60 minutes."
    assert RateLimitedError(retry_after=1).public_message.endswith("in 1 second.")
    assert RateLimitedError(retry_after=45).public_message.endswith("in 45 seconds.")
    assert RateLimitedError(retry_after=150).public_message.endswith("in 3 minutes.")
