from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import UnauthorizedError
from histora.models import RefreshToken, Role, User
from histora.models.base import utcnow
from histora.services import tokens
from histora.settings import Settings
from tests.factories import make_user

OTHER_SECRET = "a-different-secret-that-is-long-enough-0123456789"


def _claims(settings: Settings, user: User, **overrides: Any) -> dict[str, Any]:
    now = int(utcnow().timestamp())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user.id),
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "role": "admin",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


async def _row(db: AsyncSession, refresh_token: str) -> RefreshToken:
    token_hash = tokens.hash_refresh_token(refresh_token)
    row = (await db.exec(select(RefreshToken).where(RefreshToken.token_hash == token_hash))).one()
    await db.refresh(row)
    return row


async def test_access_token_round_trip(db: AsyncSession, settings: Settings) -> None:
    user = await make_user(db, role=Role.ADMIN)
    pair = await tokens.issue_token_pair(db, user=user, settings=settings)
    claims = tokens.decode_access_token(pair.access_token, settings=settings)
    assert claims.user_id == user.id
    assert claims.role == Role.ADMIN
    assert pair.token_type == "bearer"
    assert pair.expires_in == settings.access_token_ttl_seconds
    assert (claims.expires_at - claims.issued_at).total_seconds() == pair.expires_in
    assert (
        await tokens.actor_from_access_token(db, token=pair.access_token, settings=settings) == user
    )


FORGERIES: dict[str, Callable[[Settings, User], str]] = {
    "alg none": lambda s, u: jwt.encode(_claims(s, u), None, algorithm="none"),
    "wrong key": lambda s, u: jwt.encode(_claims(s, u), OTHER_SECRET, algorithm="HS256"),
    "other HMAC algorithm": lambda s, u: jwt.encode(
        _claims(s, u), s.signing_secret(), algorithm="HS512"
    ),
    "expired": lambda s, u: jwt.encode(
        _claims(s, u, iat=int(utcnow().timestamp()) - 120, exp=int(utcnow().timestamp()) - 60),
        s.signing_secret(),
        algorithm="HS256",
    ),
    "wrong audience": lambda s, u: jwt.encode(
        _claims(s, u, aud="someone-else"), s.signing_secret(), algorithm="HS256"
    ),
    "wrong issuer": lambda s, u: jwt.encode(
        _claims(s, u, iss="evil"), s.signing_secret(), algorithm="HS256"
    ),
    "missing jti": lambda s, u: jwt.encode(
        _claims(s, u, jti=None), s.signing_secret(), algorithm="HS256"
    ),
    "subject not a user id": lambda s, u: jwt.encode(
        _claims(s, u, sub="root"), s.signing_secret(), algorithm="HS256"
    ),
    "garbage": lambda s, u: "not.a.token",
    "empty": lambda s, u: "",
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_forged_access_tokens_are_refused(
    db: AsyncSession, settings: Settings, forgery: str
) -> None:
    user = await make_user(db)
    token = FORGERIES[forgery](settings, user)
    with pytest.raises(UnauthorizedError) as caught:
        tokens.decode_access_token(token, settings=settings)
    assert caught.value.public_message == tokens.SESSION_INVALID
    with pytest.raises(UnauthorizedError):
        await tokens.actor_from_access_token(db, token=token, settings=settings)


async def test_access_token_of_disabled_user_is_refused(
    db: AsyncSession, settings: Settings
) -> None:
    user = await make_user(db)
    pair = await tokens.issue_token_pair(db, user=user, settings=settings)
    user.disabled = True
    await db.commit()
    with pytest.raises(UnauthorizedError):
        await tokens.actor_from_access_token(db, token=pair.access_token, settings=settings)


async def test_refresh_token_is_stored_hashed(db: AsyncSession, settings: Settings) -> None:
    user = await make_user(db)
    pair = await tokens.issue_token_pair(
        db, user=user, settings=settings, user_agent="pytest", ip="10.0.0.1"
    )
    row = await _row(db, pair.refresh_token)
    assert row.token_hash != pair.refresh_token and len(row.token_hash) == 64
    assert row.user_agent == "pytest" and row.ip_address == "10.0.0.1"
    assert row.expires_at > utcnow() + timedelta(days=settings.refresh_token_ttl_days - 1)


async def test_rotation_revokes_old_token_and_keeps_the_family(
    db: AsyncSession, settings: Settings
) -> None:
    user = await make_user(db)
    first = await tokens.issue_token_pair(db, user=user, settings=settings)
    rotated_user, second = await tokens.rotate_refresh_token(
        db, refresh_token=first.refresh_token, settings=settings
    )
    assert rotated_user.id == user.id
    assert second.refresh_token != first.refresh_token
    old, new = await _row(db, first.refresh_token), await _row(db, second.refresh_token)
    assert old.revoked_at is not None
    assert old.replaced_by_id == new.id
    assert new.family_id == old.family_id
    assert new.revoked_at is None


async def test_reusing_a_rotated_token_revokes_the_whole_family(
    db: AsyncSession, settings: Settings
) -> None:
    user = await make_user(db)
    first = await tokens.issue_token_pair(db, user=user, settings=settings)
    other_session = await tokens.issue_token_pair(db, user=user, settings=settings)
    _, second = await tokens.rotate_refresh_token(
        db, refresh_token=first.refresh_token, settings=settings, user_agent=BROWSER, ip=HOME
    )
    with pytest.raises(UnauthorizedError):
        await tokens.rotate_refresh_token(
            db, refresh_token=first.refresh_token, settings=settings, user_agent="curl", ip=AWAY
        )
    # The thief's (or the victim's) newer token is dead too ...
    assert (await _row(db, second.refresh_token)).revoked_at is not None
    with pytest.raises(UnauthorizedError):
        await tokens.rotate_refresh_token(db, refresh_token=second.refresh_token, settings=settings)
    # ... but another sign-in (another family) is untouched.
    await tokens.rotate_refresh_token(
        db, refresh_token=other_session.refresh_token, settings=settings
    )


BROWSER, HOME, AWAY = "Mozilla/5.0 (X11; Linux x86_64)", "203.0.113.7", "198.51.100.9"


async def test_tabs_opened_together_share_a_just_rotated_token(
    db: AsyncSession, settings: Settings
) -> None:
    user = await make_user(db)
    stored = await tokens.issue_token_pair(db, user=user, settings=settings)
    same_browser = {"settings": settings, "user_agent": BROWSER, "ip": HOME}
    _, tab_a = await tokens.rotate_refresh_token(
        db, refresh_token=stored.refresh_token, **same_browser
    )
    _, tab_b = await tokens.rotate_refresh_token(
        db, refresh_token=stored.refresh_token, **same_browser
    )
    assert tab_a.refresh_token != tab_b.refresh_token
    for pair in (tab_a, tab_b):
        assert (await _row(db, pair.refresh_token)).revoked_at is None


async def test_a_rotated_token_replayed_after_the_grace_window_revokes_the_family(
    db: AsyncSession, settings: Settings
) -> None:
    user = await make_user(db)
    stored = await tokens.issue_token_pair(db, user=user, settings=settings)
    same_browser = {"settings": settings, "user_agent": BROWSER, "ip": HOME}
    _, newer = await tokens.rotate_refresh_token(
        db, refresh_token=stored.refresh_token, **same_browser
    )
    old_row = await _row(db, stored.refresh_token)
    assert old_row.revoked_at is not None
    old_row.revoked_at -= timedelta(seconds=settings.refresh_reuse_grace_seconds + 1)
    db.add(old_row)
    await db.commit()
    with pytest.raises(UnauthorizedError):
        await tokens.rotate_refresh_token(db, refresh_token=stored.refresh_token, **same_browser)
    assert (await _row(db, newer.refresh_token)).revoked_at is not None


async def test_a_signed_out_token_gets_no_grace(db: AsyncSession, settings: Settings) -> None:
    user = await make_user(db)
    stored = await tokens.issue_token_pair(db, user=user, settings=settings)
    await tokens.revoke_refresh_token(db, refresh_token=stored.refresh_token)
    with pytest.raises(UnauthorizedError):
        await tokens.rotate_refresh_token(
            db, refresh_token=stored.refresh_token, settings=settings, user_agent=BROWSER, ip=HOME
        )


async def test_unknown_refresh_token_is_refused(db: AsyncSession, settings: Settings) -> None:
    with pytest.raises(UnauthorizedError):
        await tokens.rotate_refresh_token(db, refresh_token="made-up", settings=settings)


async def test_expired_refresh_token_is_refused(db: AsyncSession, settings: Settings) -> None:
    user = await make_user(db)
    pair = await tokens.issue_token_pair(db, user=user, settings=settings)
    row = await _row(db, pair.refresh_token)
    row.expires_at = utcnow() - timedelta(seconds=1)
    await db.commit()
    with pytest.raises(UnauthorizedError):
        await tokens.rotate_refresh_token(db, refresh_token=pair.refresh_token, settings=settings)


async def test_disabled_user_cannot_refresh_and_loses_the_family(
    db: AsyncSession, settings: Settings
) -> None:
    user = await make_user(db)
    pair = await tokens.issue_token_pair(db, user=user, settings=settings)
    user.disabled = True
    await db.commit()
    with pytest.raises(UnauthorizedError):
        await tokens.rotate_refresh_token(db, refresh_token=pair.refresh_token, settings=settings)
    assert (await _row(db, pair.refresh_token)).revoked_at is not None


async def test_disabled_user_gets_no_new_tokens(db: AsyncSession, settings: Settings) -> None:
    user = await make_user(db, disabled=True)
    with pytest.raises(UnauthorizedError):
        await tokens.issue_token_pair(db, user=user, settings=settings)


async def test_sign_out_revokes_one_token(db: AsyncSession, settings: Settings) -> None:
    user = await make_user(db)
    pair = await tokens.issue_token_pair(db, user=user, settings=settings)
    await tokens.revoke_refresh_token(db, refresh_token=pair.refresh_token)
    with pytest.raises(UnauthorizedError):
        await tokens.rotate_refresh_token(db, refresh_token=pair.refresh_token, settings=settings)
    await tokens.revoke_refresh_token(db, refresh_token="never-issued")  # a no-op


async def test_sign_out_everywhere_revokes_only_that_users_tokens(
    db: AsyncSession, settings: Settings
) -> None:
    user, other = await make_user(db), await make_user(db)
    mine = [await tokens.issue_token_pair(db, user=user, settings=settings) for _ in range(3)]
    theirs = await tokens.issue_token_pair(db, user=other, settings=settings)
    await tokens.revoke_all_refresh_tokens(db, actor=user)
    for pair in mine:
        assert (await _row(db, pair.refresh_token)).revoked_at is not None
    assert (await _row(db, theirs.refresh_token)).revoked_at is None
