"""Password hashing (argon2id) and the password policy.

Hashing is deliberately slow and memory-hungry, so it runs in a worker thread
(the event loop keeps serving) under a semaphore (a burst of sign-ins cannot
allocate ``concurrency x memory`` without bound).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from histora.errors import InvalidInputError
from histora.settings import Settings

MAX_PASSWORD_LENGTH = 128
# Local parts this short are too common to forbid inside a password ("jo", "ann").
_MIN_LOCAL_PART_TO_CHECK = 4

# Very common passwords of a plausible length (lower-cased); the length rule
# catches most shorter ones.
COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "password12",
        "password123",
        "password1234",
        "passw0rd123",
        "p@ssw0rd123",
        "123456789",
        "1234567890",
        "12345678910",
        "0987654321",
        "1111111111",
        "123123123123",
        "qwertyuiop",
        "qwerty1234",
        "qwerty12345",
        "qwerty123456",
        "1q2w3e4r5t",
        "1qaz2wsx3edc",
        "asdfghjkl",
        "zxcvbnm123",
        "iloveyou123",
        "letmein123",
        "welcome123",
        "changeme123",
        "administrator",
        "admin12345",
        "abc1234567",
        "abcdefghij",
        "football123",
        "sunshine123",
        "trustno1234",
    }
)

# A constant input for the dummy hash; its value does not matter, only that
# verifying against it costs the same as verifying a real hash.
_DUMMY_PASSWORD = "histora-dummy-password-for-timing"  # noqa: S105

_semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]]
_semaphores = weakref.WeakKeyDictionary()
_semaphores_lock = threading.Lock()
_dummy_hashes: dict[tuple[int, int, int], str] = {}


def _semaphore(size: int) -> asyncio.Semaphore:
    """One semaphore per event loop (a semaphore must not cross loops), made on demand.

    The lock covers several loops in several threads (tests, the CLI next to a server).
    """
    loop = asyncio.get_running_loop()
    with _semaphores_lock:
        per_loop = _semaphores.setdefault(loop, {})
        semaphore = per_loop.get(size)
        if semaphore is None:
            semaphore = per_loop[size] = asyncio.Semaphore(size)
        return semaphore


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(
        time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
    )


def _params(settings: Settings) -> tuple[int, int, int]:
    return (
        settings.password_hash_time_cost,
        settings.password_hash_memory_kib,
        settings.password_hash_parallelism,
    )


def _hasher_for(settings: Settings) -> PasswordHasher:
    return _hasher(*_params(settings))


def _verify_sync(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _verify_dummy_sync(hasher: PasswordHasher, settings: Settings, password: str) -> None:
    # Built once with the current parameters, so a miss costs what a hit costs.
    params = _params(settings)
    dummy = _dummy_hashes.get(params)
    if dummy is None:
        dummy = _dummy_hashes[params] = hasher.hash(_DUMMY_PASSWORD)
    _verify_sync(hasher, dummy, password)


async def hash_password(password: str, *, settings: Settings) -> str:
    hasher = _hasher_for(settings)
    async with _semaphore(settings.password_hash_concurrency):
        return await asyncio.to_thread(hasher.hash, password)


async def verify_password(password_hash: str | None, password: str, *, settings: Settings) -> bool:
    """True when ``password`` matches. With no hash (no such account, or an account
    without a password) a dummy hash is checked anyway, so the answer takes as long."""
    hasher = _hasher_for(settings)
    async with _semaphore(settings.password_hash_concurrency):
        if password_hash is None:
            await asyncio.to_thread(_verify_dummy_sync, hasher, settings, password)
            return False
        return await asyncio.to_thread(_verify_sync, hasher, password_hash, password)


def needs_rehash(password_hash: str, *, settings: Settings) -> bool:
    """True when the hash was made with other parameters than the current settings."""
    try:
        return _hasher_for(settings).check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def validate_password_policy(password: str, *, email: str, settings: Settings) -> None:
    """Raise ``InvalidInputError`` naming the first rule the password breaks."""
    minimum = settings.password_min_length
    if len(password) < minimum:
        raise InvalidInputError(f"Choose a password of at least {minimum} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInputError(f"Choose a password of at most {MAX_PASSWORD_LENGTH} characters.")
    lowered = password.lower()
    local_part = email.strip().lower().partition("@")[0]
    if local_part and (
        lowered == local_part
        or (len(local_part) >= _MIN_LOCAL_PART_TO_CHECK and local_part in lowered)
    ):
        raise InvalidInputError("Your password must not contain your email address.")
    if len(set(password)) == 1:
        raise InvalidInputError("Your password must not repeat a single character.")
    if lowered in COMMON_PASSWORDS:
        raise InvalidInputError("That password is too common. Please choose another.")
