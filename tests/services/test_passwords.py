from __future__ import annotations

import asyncio

import pytest

from histora.errors import InvalidInputError
from histora.services import passwords
from histora.settings import Settings

GOOD_PASSWORD = "correct horse battery"


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"password_hash_time_cost": 1, "password_hash_memory_kib": 1024}
    )


async def test_hash_is_argon2id_with_configured_parameters(fast: Settings) -> None:
    hashed = await passwords.hash_password(GOOD_PASSWORD, settings=fast)
    assert hashed.startswith("$argon2id$")
    assert "m=1024,t=1,p=1" in hashed
    assert GOOD_PASSWORD not in hashed


async def test_verify_accepts_right_password_and_refuses_wrong(fast: Settings) -> None:
    hashed = await passwords.hash_password(GOOD_PASSWORD, settings=fast)
    assert await passwords.verify_password(hashed, GOOD_PASSWORD, settings=fast)
    assert not await passwords.verify_password(hashed, GOOD_PASSWORD + "!", settings=fast)


async def test_verify_without_hash_is_false(fast: Settings) -> None:
    assert not await passwords.verify_password(None, GOOD_PASSWORD, settings=fast)


async def test_verify_malformed_hash_is_false(fast: Settings) -> None:
    assert not await passwords.verify_password("not-a-hash", GOOD_PASSWORD, settings=fast)


async def test_hashes_are_salted(fast: Settings) -> None:
    first = await passwords.hash_password(GOOD_PASSWORD, settings=fast)
    second = await passwords.hash_password(GOOD_PASSWORD, settings=fast)
    assert first != second


async def test_needs_rehash_when_parameters_change(fast: Settings) -> None:
    hashed = await passwords.hash_password(GOOD_PASSWORD, settings=fast)
    assert not passwords.needs_rehash(hashed, settings=fast)
    stronger = fast.model_copy(update={"password_hash_memory_kib": 2048})
    assert passwords.needs_rehash(hashed, settings=stronger)
    assert passwords.needs_rehash("garbage", settings=fast)


async def test_concurrent_hashes_under_a_small_cap_all_complete(fast: Settings) -> None:
    capped = fast.model_copy(update={"password_hash_concurrency": 2})
    hashes = await asyncio.gather(
        *(passwords.hash_password(f"{GOOD_PASSWORD} {n}", settings=capped) for n in range(6))
    )
    results = await asyncio.gather(
        *(
            passwords.verify_password(h, f"{GOOD_PASSWORD} {n}", settings=capped)
            for n, h in enumerate(hashes)
        )
    )
    assert all(results)


async def test_hashing_works_from_another_event_loop(fast: Settings) -> None:
    # The semaphore is per loop; a second loop (another thread) must get its own.
    await passwords.hash_password(GOOD_PASSWORD, settings=fast)
    hashed = await asyncio.to_thread(
        asyncio.run, passwords.hash_password(GOOD_PASSWORD, settings=fast)
    )
    assert await passwords.verify_password(hashed, GOOD_PASSWORD, settings=fast)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short1!", "at least 10 characters"),
        ("x" * 120 + "abcdefghi", "at most 128 characters"),
        ("marie.curie", "must not contain your email"),
        ("MyMarie.Curie-2024", "must not contain your email"),
        ("aaaaaaaaaaaa", "must not repeat a single character"),
        ("Password123", "too common"),
        ("qwertyuiop", "too common"),
    ],
)
def test_policy_refuses_weak_passwords(fast: Settings, password: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        passwords.validate_password_policy(password, email="Marie.Curie@example.com", settings=fast)
    assert message in caught.value.public_message


def test_policy_accepts_a_reasonable_password(fast: Settings) -> None:
    passwords.validate_password_policy(GOOD_PASSWORD, email="marie@example.com", settings=fast)


def test_policy_ignores_very_short_local_parts_inside_passwords(fast: Settings) -> None:
    # "al" appears in many words; only a whole-password match is refused for it.
    passwords.validate_password_policy(
        "totally valid phrase", email="al@example.com", settings=fast
    )


def test_policy_minimum_follows_settings(fast: Settings) -> None:
    stricter = fast.model_copy(update={"password_min_length": 24})
    with pytest.raises(InvalidInputError, match="24"):
        passwords.validate_password_policy(GOOD_PASSWORD, email="m@example.com", settings=stricter)
