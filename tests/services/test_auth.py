from __future__ import annotations

import uuid

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnauthorizedError,
)
from histora.models import CreditLedgerEntry, CreditReason, RefreshToken, Role, User
from histora.services import api_keys, auth, passwords, tokens
from histora.settings import Settings
from tests.factories import make_user

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple gun envelope"


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"password_hash_time_cost": 1, "password_hash_memory_kib": 1024}
    )


def _email() -> str:
    return f"person-{uuid.uuid4().hex[:8]}@example.com"


async def _register(db: AsyncSession, settings: Settings, email: str | None = None) -> User:
    return await auth.register(
        db, email=email or _email(), password=PASSWORD, display_name="Ada", settings=settings
    )


async def _live_tokens(db: AsyncSession, user: User) -> list[RefreshToken]:
    rows = await db.exec(select(RefreshToken).where(RefreshToken.user_id == user.id))
    live = []
    for row in rows:
        await db.refresh(row)
        if row.revoked_at is None:
            live.append(row)
    return live


async def test_register_creates_user_with_signup_credits(db: AsyncSession, fast: Settings) -> None:
    email = _email()
    user = await auth.register(
        db, email=f"  {email.upper()} ", password=PASSWORD, display_name="  Ada  ", settings=fast
    )
    assert user.email == email
    assert user.display_name == "Ada"
    assert user.role == Role.USER
    assert user.password_hash is not None and PASSWORD not in user.password_hash
    assert user.credits == fast.signup_credits
    (entry,) = (
        await db.exec(select(CreditLedgerEntry).where(CreditLedgerEntry.user_id == user.id))
    ).all()
    assert entry.reason == CreditReason.SIGNUP
    assert entry.delta == entry.balance_after == fast.signup_credits


async def test_register_duplicate_email_conflicts(db: AsyncSession, fast: Settings) -> None:
    email = _email()
    await _register(db, fast, email)
    with pytest.raises(ConflictError) as caught:
        await _register(db, fast, email.upper())
    assert caught.value.public_message == "An account with this email already exists."


@pytest.mark.parametrize(
    ("email", "password", "display_name"),
    [
        ("not-an-email", PASSWORD, "Ada"),
        ("two@@example.com", PASSWORD, "Ada"),
        ("ada@localhost", PASSWORD, "Ada"),
        ("ada@example.com", PASSWORD, "   "),
        ("ada@example.com", PASSWORD, "x" * 81),
        ("ada@example.com", "short", "Ada"),
        ("ada@example.com", "password123", "Ada"),
    ],
)
async def test_register_refuses_invalid_input(
    db: AsyncSession, fast: Settings, email: str, password: str, display_name: str
) -> None:
    with pytest.raises(InvalidInputError):
        await auth.register(
            db, email=email, password=password, display_name=display_name, settings=fast
        )


async def test_authenticate_succeeds_and_records_the_login(
    db: AsyncSession, fast: Settings
) -> None:
    user = await _register(db, fast)
    assert user.last_login_at is None
    signed_in = await auth.authenticate(
        db, email=user.email.upper(), password=PASSWORD, settings=fast
    )
    assert signed_in.id == user.id
    assert signed_in.last_login_at is not None


async def test_authentication_failures_all_look_the_same(db: AsyncSession, fast: Settings) -> None:
    user = await _register(db, fast)
    no_password = await make_user(db)
    disabled = await _register(db, fast)
    disabled.disabled = True
    await db.commit()
    attempts = [
        (_email(), PASSWORD),  # unknown account
        (user.email, "wrong password!"),
        (user.email, "x" * 10_000),
        (no_password.email, PASSWORD),
        (disabled.email, PASSWORD),
    ]
    for email, password in attempts:
        with pytest.raises(UnauthorizedError) as caught:
            await auth.authenticate(db, email=email, password=password, settings=fast)
        assert caught.value.public_message == "Email or password is incorrect."


async def test_authenticate_upgrades_an_outdated_hash(db: AsyncSession, fast: Settings) -> None:
    user = await _register(db, fast)
    old_hash = user.password_hash
    stronger = fast.model_copy(update={"password_hash_memory_kib": 2048})
    await auth.authenticate(db, email=user.email, password=PASSWORD, settings=stronger)
    assert user.password_hash != old_hash
    assert user.password_hash is not None
    assert not passwords.needs_rehash(user.password_hash, settings=stronger)
    await auth.authenticate(db, email=user.email, password=PASSWORD, settings=stronger)


async def test_bearer_accepts_access_tokens_and_api_keys(db: AsyncSession, fast: Settings) -> None:
    user = await _register(db, fast)
    pair = await tokens.issue_token_pair(db, user=user, settings=fast)
    _, secret = await api_keys.create_api_key(db, actor=user, name="cli")
    assert await auth.authenticate_bearer(db, token=pair.access_token, settings=fast) == user
    assert await auth.authenticate_bearer(db, token=secret, settings=fast) == user
    for bad in ("garbage", "hk_garbage"):
        with pytest.raises(UnauthorizedError):
            await auth.authenticate_bearer(db, token=bad, settings=fast)
    user.disabled = True
    await db.commit()
    for credential in (pair.access_token, secret):
        with pytest.raises(UnauthorizedError):
            await auth.authenticate_bearer(db, token=credential, settings=fast)


async def test_change_password_requires_the_current_one(db: AsyncSession, fast: Settings) -> None:
    user = await _register(db, fast)
    with pytest.raises(InvalidInputError, match="current password"):
        await auth.change_password(
            db, actor=user, current_password="wrong one!", new_password=NEW_PASSWORD, settings=fast
        )


async def test_change_password_applies_policy(db: AsyncSession, fast: Settings) -> None:
    user = await _register(db, fast)
    for weak in ("short", PASSWORD):
        with pytest.raises(InvalidInputError):
            await auth.change_password(
                db, actor=user, current_password=PASSWORD, new_password=weak, settings=fast
            )


async def test_change_password_switches_and_signs_out_everywhere(
    db: AsyncSession, fast: Settings
) -> None:
    user = await _register(db, fast)
    pair = await tokens.issue_token_pair(db, user=user, settings=fast)
    await auth.change_password(
        db, actor=user, current_password=PASSWORD, new_password=NEW_PASSWORD, settings=fast
    )
    assert await _live_tokens(db, user) == []
    with pytest.raises(UnauthorizedError):
        await tokens.rotate_refresh_token(db, refresh_token=pair.refresh_token, settings=fast)
    with pytest.raises(UnauthorizedError):
        await auth.authenticate(db, email=user.email, password=PASSWORD, settings=fast)
    await auth.authenticate(db, email=user.email, password=NEW_PASSWORD, settings=fast)


async def test_update_profile_trims_and_validates(db: AsyncSession) -> None:
    user = await make_user(db)
    updated = await auth.update_profile(db, actor=user, display_name="  Grace Hopper ")
    assert updated.display_name == "Grace Hopper"
    with pytest.raises(InvalidInputError):
        await auth.update_profile(db, actor=user, display_name="  ")


async def test_ensure_admin_creates_then_is_idempotent(db: AsyncSession, fast: Settings) -> None:
    email = _email()
    admin = await auth.ensure_admin(db, email=email, password=PASSWORD, settings=fast)
    assert admin.role == Role.ADMIN
    pair = await tokens.issue_token_pair(db, user=admin, settings=fast)
    again = await auth.ensure_admin(db, email=email.upper(), password=PASSWORD, settings=fast)
    assert again.id == admin.id
    # Same password: the admin's sessions survive a restart.
    assert len(await _live_tokens(db, admin)) == 1
    matching = (await db.exec(select(User).where(User.email == email))).all()
    assert len(matching) == 1
    await auth.authenticate(db, email=email, password=PASSWORD, settings=fast)
    await tokens.rotate_refresh_token(db, refresh_token=pair.refresh_token, settings=fast)


async def test_ensure_admin_promotes_and_resets_password(db: AsyncSession, fast: Settings) -> None:
    user = await _register(db, fast)
    await tokens.issue_token_pair(db, user=user, settings=fast)
    admin = await auth.ensure_admin(db, email=user.email, password=NEW_PASSWORD, settings=fast)
    assert admin.id == user.id and admin.role == Role.ADMIN
    assert await _live_tokens(db, admin) == []
    await auth.authenticate(db, email=user.email, password=NEW_PASSWORD, settings=fast)


async def test_ensure_admin_refuses_a_weak_password(db: AsyncSession, fast: Settings) -> None:
    with pytest.raises(InvalidInputError):
        await auth.ensure_admin(db, email=_email(), password="admin", settings=fast)


async def test_set_disabled_is_admin_only(db: AsyncSession) -> None:
    actor, target = await make_user(db), await make_user(db)
    with pytest.raises(ForbiddenError):
        await auth.set_disabled(db, actor=actor, user_id=target.id, disabled=True)
    assert not target.disabled


async def test_admin_cannot_disable_themselves(db: AsyncSession) -> None:
    admin = await make_user(db, role=Role.ADMIN)
    with pytest.raises(InvalidInputError):
        await auth.set_disabled(db, actor=admin, user_id=admin.id, disabled=True)


async def test_disabling_unknown_user_is_not_found(db: AsyncSession) -> None:
    admin = await make_user(db, role=Role.ADMIN)
    with pytest.raises(NotFoundError):
        await auth.set_disabled(db, actor=admin, user_id=uuid.uuid4(), disabled=True)


async def test_disabling_signs_the_user_out_and_blocks_sign_in(
    db: AsyncSession, fast: Settings
) -> None:
    admin = await make_user(db, role=Role.ADMIN)
    target = await _register(db, fast)
    pair = await tokens.issue_token_pair(db, user=target, settings=fast)
    await auth.set_disabled(db, actor=admin, user_id=target.id, disabled=True)
    assert target.disabled
    assert await _live_tokens(db, target) == []
    with pytest.raises(UnauthorizedError):
        await auth.authenticate(db, email=target.email, password=PASSWORD, settings=fast)
    with pytest.raises(UnauthorizedError):
        await auth.authenticate_bearer(db, token=pair.access_token, settings=fast)
    await auth.set_disabled(db, actor=admin, user_id=target.id, disabled=False)
    await auth.authenticate(db, email=target.email, password=PASSWORD, settings=fast)
