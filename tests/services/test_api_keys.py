from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import InvalidInputError, NotFoundError, UnauthorizedError
from histora.models import ApiKey
from histora.models.base import utcnow
from histora.services import api_keys
from tests.factories import make_user


async def test_create_shows_the_secret_once_and_stores_only_a_hash(db: AsyncSession) -> None:
    user = await make_user(db)
    public, secret = await api_keys.create_api_key(db, actor=user, name="  CI runner  ")
    assert secret.startswith("hk_") and len(secret) > 40
    assert public.name == "CI runner"
    assert public.prefix == secret[:10]
    row = await db.get(ApiKey, public.id)
    assert row is not None
    assert row.key_hash == api_keys.hash_api_key(secret) != secret
    listed = await api_keys.list_api_keys(db, actor=user)
    assert [k.id for k in listed] == [public.id]
    dumped = listed[0].model_dump()
    assert "key_hash" not in dumped and secret not in str(dumped)


async def test_key_authenticates_its_owner(db: AsyncSession) -> None:
    user = await make_user(db)
    _, secret = await api_keys.create_api_key(db, actor=user, name="script")
    assert await api_keys.actor_from_api_key(db, key=secret) == user


async def test_last_used_is_written_at_most_once_a_minute(db: AsyncSession) -> None:
    user = await make_user(db)
    public, secret = await api_keys.create_api_key(db, actor=user, name="script")
    await api_keys.actor_from_api_key(db, key=secret)
    row = await db.get(ApiKey, public.id)
    assert row is not None and row.last_used_at is not None
    first_use = row.last_used_at
    await api_keys.actor_from_api_key(db, key=secret)
    assert row.last_used_at == first_use
    row.last_used_at = utcnow() - timedelta(minutes=2)
    await db.commit()
    await api_keys.actor_from_api_key(db, key=secret)
    assert row.last_used_at > first_use


@pytest.mark.parametrize("key", ["hk_unknown", "not-even-a-key", "hk_" + "x" * 500, ""])
async def test_unknown_keys_are_refused(db: AsyncSession, key: str) -> None:
    with pytest.raises(UnauthorizedError):
        await api_keys.actor_from_api_key(db, key=key)


async def test_revoked_key_is_refused(db: AsyncSession) -> None:
    user = await make_user(db)
    public, secret = await api_keys.create_api_key(db, actor=user, name="old")
    await api_keys.revoke_api_key(db, actor=user, key_id=public.id)
    await api_keys.revoke_api_key(db, actor=user, key_id=public.id)  # twice is fine
    with pytest.raises(UnauthorizedError):
        await api_keys.actor_from_api_key(db, key=secret)
    (listed,) = await api_keys.list_api_keys(db, actor=user)
    assert listed.revoked_at is not None


async def test_expired_key_is_refused(db: AsyncSession) -> None:
    user = await make_user(db)
    public, secret = await api_keys.create_api_key(db, actor=user, name="temp")
    row = await db.get(ApiKey, public.id)
    assert row is not None
    row.expires_at = utcnow() - timedelta(seconds=1)
    await db.commit()
    with pytest.raises(UnauthorizedError):
        await api_keys.actor_from_api_key(db, key=secret)


async def test_key_of_disabled_user_is_refused(db: AsyncSession) -> None:
    user = await make_user(db)
    _, secret = await api_keys.create_api_key(db, actor=user, name="script")
    user.disabled = True
    await db.commit()
    with pytest.raises(UnauthorizedError):
        await api_keys.actor_from_api_key(db, key=secret)


async def test_revoking_someone_elses_key_is_not_found(db: AsyncSession) -> None:
    owner, intruder = await make_user(db), await make_user(db)
    public, secret = await api_keys.create_api_key(db, actor=owner, name="mine")
    with pytest.raises(NotFoundError):
        await api_keys.revoke_api_key(db, actor=intruder, key_id=public.id)
    with pytest.raises(NotFoundError):
        await api_keys.revoke_api_key(db, actor=intruder, key_id=uuid.uuid4())
    assert await api_keys.actor_from_api_key(db, key=secret) == owner
    assert await api_keys.list_api_keys(db, actor=intruder) == []


@pytest.mark.parametrize("name", ["", "   ", "x" * 81])
async def test_key_name_must_be_1_to_80_characters(db: AsyncSession, name: str) -> None:
    user = await make_user(db)
    with pytest.raises(InvalidInputError):
        await api_keys.create_api_key(db, actor=user, name=name)


async def test_at_most_20_active_keys(db: AsyncSession) -> None:
    user = await make_user(db)
    created = [
        (await api_keys.create_api_key(db, actor=user, name=f"key {n}"))[0] for n in range(20)
    ]
    with pytest.raises(InvalidInputError, match="at most 20"):
        await api_keys.create_api_key(db, actor=user, name="one too many")
    await api_keys.revoke_api_key(db, actor=user, key_id=created[0].id)
    await api_keys.create_api_key(db, actor=user, name="replacement")
