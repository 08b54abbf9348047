"""API keys for external clients.

A key is ``hk_`` plus 256 random bits. Only its SHA-256 and a short display
prefix are stored; the secret is shown once, when the key is created.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

from sqlalchemy import ColumnElement, bindparam, func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import InvalidInputError, NotFoundError, UnauthorizedError
from histora.models import ApiKey, User
from histora.models.base import utcnow
from histora.models.users import ApiKeyPublic
from histora.services.text_input import refuse_nul

KEY_PREFIX = "hk_"
DISPLAY_PREFIX_LENGTH = 10
MAX_ACTIVE_KEYS = 20
MAX_NAME_LENGTH = 80
# Longer than any key we issue; refuses junk before hashing it.
_MAX_KEY_LENGTH = 128
# Writing last_used_at on every request would turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
INVALID_KEY = "This API key is invalid, expired or revoked."


# The key and its owner in one query, built once: this runs on every API request.
_KEY_AND_OWNER = (
    select(ApiKey, User)
    .join(User, col(User.id) == col(ApiKey.user_id))
    .where(col(ApiKey.key_hash) == bindparam("key_hash"))
)


def hash_api_key(key: str) -> str:
    # Looking up a plain digest is safe here: the key has 256 random bits, so
    # neither brute force nor timing on the indexed lookup gets anywhere.
    return hashlib.sha256(key.encode()).hexdigest()


def _public(key: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(key, from_attributes=True)


def _active() -> tuple[ColumnElement[bool], ...]:
    return (
        col(ApiKey.revoked_at).is_(None),
        or_(col(ApiKey.expires_at).is_(None), col(ApiKey.expires_at) > utcnow()),
    )


async def create_api_key(db: AsyncSession, *, actor: User, name: str) -> tuple[ApiKeyPublic, str]:
    """A new key for the actor: its public view and the secret (shown once)."""
    clean = refuse_nul(name.strip(), what="A key's name")
    if not 1 <= len(clean) <= MAX_NAME_LENGTH:
        raise InvalidInputError(f"Give the key a name of 1 to {MAX_NAME_LENGTH} characters.")
    active = (
        await db.exec(
            select(func.count()).select_from(ApiKey).where(ApiKey.user_id == actor.id, *_active())
        )
    ).one()
    if active >= MAX_ACTIVE_KEYS:
        raise InvalidInputError(
            f"You can have at most {MAX_ACTIVE_KEYS} active API keys. Revoke one first."
        )
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        user_id=actor.id,
        name=clean,
        prefix=secret[:DISPLAY_PREFIX_LENGTH],
        key_hash=hash_api_key(secret),
    )
    db.add(key)
    await db.commit()
    return _public(key), secret


async def list_api_keys(db: AsyncSession, *, actor: User) -> list[ApiKeyPublic]:
    """The actor's keys, newest first, revoked ones included (with ``revoked_at``)."""
    rows = await db.exec(
        select(ApiKey).where(ApiKey.user_id == actor.id).order_by(col(ApiKey.created_at).desc())
    )
    return [_public(key) for key in rows]


async def revoke_api_key(db: AsyncSession, *, actor: User, key_id: uuid.UUID) -> None:
    """Revoke one of the actor's keys; revoking twice is a no-op."""
    key = await db.get(ApiKey, key_id)
    # Someone else's key is "not found", so ids cannot be probed.
    if key is None or key.user_id != actor.id:
        raise NotFoundError("No such API key.")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        db.add(key)
        await db.commit()


async def actor_from_api_key(db: AsyncSession, *, key: str) -> User:
    """The owner of a valid key; refuses unknown, revoked, expired keys and disabled owners."""
    if not key.startswith(KEY_PREFIX) or len(key) > _MAX_KEY_LENGTH:
        raise UnauthorizedError(INVALID_KEY)
    found = (await db.exec(_KEY_AND_OWNER, params={"key_hash": hash_api_key(key)})).first()
    now = utcnow()
    if found is None:
        raise UnauthorizedError(INVALID_KEY)
    row, user = found
    if row.revoked_at is not None:
        raise UnauthorizedError(INVALID_KEY)
    if row.expires_at is not None and row.expires_at <= now:
        raise UnauthorizedError(INVALID_KEY)
    if user.disabled:
        raise UnauthorizedError(INVALID_KEY, detail="API key of a missing/disabled user")
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
        db.add(row)
        await db.commit()
    return user
