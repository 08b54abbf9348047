"""Access tokens (short-lived JWTs) and refresh tokens (opaque, rotated, stored hashed).

Access tokens are not stored and cannot be revoked one by one: they live at most
``access_token_ttl_seconds``. Every request still loads the user, so a disabled
account is refused at once; signing out (everywhere) revokes the refresh tokens,
which ends every session within that TTL.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
import structlog
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import UnauthorizedError
from histora.models import RefreshToken, Role, User
from histora.models.base import new_id, utcnow
from histora.settings import Settings

log = structlog.get_logger(__name__)

ALGORITHM = "HS256"
SESSION_INVALID = "Your session has expired or is invalid. Please sign in again."
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "exp", "jti"]
_USER_AGENT_MAX = 255
_IP_MAX = 64


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    role: Role
    token_id: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds until the access token expires
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret


def hash_refresh_token(refresh_token: str) -> str:
    # A plain digest is enough: the token is 384 random bits, nothing to brute-force.
    return hashlib.sha256(refresh_token.encode()).hexdigest()


def create_access_token(*, user: User, settings: Settings) -> str:
    now = int(utcnow().timestamp())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user.id),
        "iat": now,
        "exp": now + settings.access_token_ttl_seconds,
        "jti": uuid.uuid4().hex,
        "role": str(user.role),
    }
    return jwt.encode(claims, settings.signing_secret(), algorithm=ALGORITHM)


def decode_access_token(token: str, *, settings: Settings) -> AccessClaims:
    """Verify signature, algorithm, audience, issuer and expiry; any failure is 401."""
    try:
        claims = jwt.decode(
            token,
            settings.signing_secret(),
            # Pinned: never let the token choose ("none", or RS256 keyed with our secret).
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": _REQUIRED_CLAIMS},
        )
        return AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            role=Role(claims.get("role", Role.USER)),
            token_id=str(claims["jti"]),
            issued_at=datetime.fromtimestamp(claims["iat"], UTC),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
    except (jwt.PyJWTError, ValueError, TypeError, KeyError, OverflowError) as exc:
        raise UnauthorizedError(
            SESSION_INVALID, detail=f"bad access token: {type(exc).__name__}"
        ) from exc


async def actor_from_access_token(db: AsyncSession, *, token: str, settings: Settings) -> User:
    """The user an access token names, loaded fresh so disabled accounts are refused."""
    claims = decode_access_token(token, settings=settings)
    user = await db.get(User, claims.user_id)
    if user is None or user.disabled:
        raise UnauthorizedError(SESSION_INVALID, detail="access token for a missing/disabled user")
    return user


def _new_refresh_row(
    *,
    user: User,
    family_id: uuid.UUID,
    settings: Settings,
    user_agent: str | None,
    ip: str | None,
) -> tuple[RefreshToken, str]:
    secret = secrets.token_urlsafe(48)
    row = RefreshToken(
        id=new_id(),
        user_id=user.id,
        family_id=family_id,
        token_hash=hash_refresh_token(secret),
        expires_at=utcnow() + timedelta(days=settings.refresh_token_ttl_days),
        user_agent=user_agent[:_USER_AGENT_MAX] if user_agent else None,
        ip_address=ip[:_IP_MAX] if ip else None,
    )
    return row, secret


def _pair(user: User, refresh_secret: str, settings: Settings) -> TokenPair:
    return TokenPair(
        access_token=create_access_token(user=user, settings=settings),
        refresh_token=refresh_secret,
        expires_in=settings.access_token_ttl_seconds,
    )


async def issue_token_pair(
    db: AsyncSession,
    *,
    user: User,
    settings: Settings,
    family_id: uuid.UUID | None = None,
    user_agent: str | None = None,
    ip: str | None = None,
) -> TokenPair:
    """A new session (a new refresh-token family unless ``family_id`` is given)."""
    if user.disabled:
        raise UnauthorizedError("This account has been disabled.")
    row, secret = _new_refresh_row(
        user=user,
        family_id=family_id or uuid.uuid4(),
        settings=settings,
        user_agent=user_agent,
        ip=ip,
    )
    db.add(row)
    await db.commit()
    return _pair(user, secret, settings)


async def _revoke_family(db: AsyncSession, family_id: uuid.UUID) -> None:
    await db.exec(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id)
        .where(col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    await db.commit()


async def rotate_refresh_token(
    db: AsyncSession,
    *,
    refresh_token: str,
    settings: Settings,
    user_agent: str | None = None,
    ip: str | None = None,
) -> tuple[User, TokenPair]:
    """Swap a refresh token for a new pair in the same family.

    Presenting a token that was already used means it leaked (or a client raced
    itself): the whole family is revoked and the user must sign in again.
    """
    row = (
        await db.exec(
            select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(refresh_token))
        )
    ).first()
    if row is None:
        raise UnauthorizedError(SESSION_INVALID, detail="unknown refresh token")
    if row.revoked_at is not None and not await _sibling_tab(
        db, row.id, settings=settings, user_agent=user_agent, ip=ip
    ):
        await _revoke_family(db, row.family_id)
        log.warning("auth.refresh_reuse", user_id=str(row.user_id), family_id=str(row.family_id))
        raise UnauthorizedError(SESSION_INVALID, detail="refresh token reused")
    if row.expires_at <= utcnow():
        raise UnauthorizedError(SESSION_INVALID, detail="refresh token expired")
    user = await db.get(User, row.user_id)
    if user is None or user.disabled:
        await _revoke_family(db, row.family_id)
        raise UnauthorizedError(SESSION_INVALID, detail="refresh for a missing/disabled user")

    new_row, secret = _new_refresh_row(
        user=user, family_id=row.family_id, settings=settings, user_agent=user_agent, ip=ip
    )
    # Conditional update: of two concurrent rotations of one token, only one wins.
    result = await db.exec(
        update(RefreshToken)
        .where(col(RefreshToken.id) == row.id)
        .where(col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow(), replaced_by_id=new_row.id)
    )
    if result.rowcount != 1 and not await _sibling_tab(
        db, row.id, settings=settings, user_agent=user_agent, ip=ip
    ):
        await _revoke_family(db, row.family_id)
        log.warning("auth.refresh_race", user_id=str(row.user_id), family_id=str(row.family_id))
        raise UnauthorizedError(SESSION_INVALID, detail="refresh token reused concurrently")
    db.add(new_row)
    await db.commit()
    return user, _pair(user, secret, settings)


async def _sibling_tab(
    db: AsyncSession,
    row_id: uuid.UUID,
    *,
    settings: Settings,
    user_agent: str | None,
    ip: str | None,
) -> bool:
    """Whether a rotated token comes back from the browser that rotated it, moments ago.

    Several tabs opened, or refreshing, at once all present the one stored token; the
    first rotates it and the others would otherwise revoke the whole sign-in. (Tabs
    learn of a rotation from the browser within moments, state.session syncs the
    stored token, so only that short window needs the grace.) Within a few seconds
    of its rotation, from the same user agent and address as its successor, a rotated
    token may branch the family once more. A sign-out leaves no successor, and a
    replay from elsewhere or later still revokes the family.
    """
    row = (
        await db.exec(
            select(RefreshToken)
            .where(col(RefreshToken.id) == row_id)
            .execution_options(populate_existing=True)
        )
    ).first()
    if row is None or row.revoked_at is None or row.replaced_by_id is None:
        return False
    if utcnow() - row.revoked_at > timedelta(seconds=settings.refresh_reuse_grace_seconds):
        return False
    successor = await db.get(RefreshToken, row.replaced_by_id)
    return (
        successor is not None
        and successor.revoked_at is None
        and successor.user_agent == (user_agent[:_USER_AGENT_MAX] if user_agent else None)
        and successor.ip_address == (ip[:_IP_MAX] if ip else None)
    )


async def revoke_refresh_token(db: AsyncSession, *, refresh_token: str) -> None:
    """Sign out this session. Unknown or already revoked tokens are a no-op."""
    await db.exec(
        update(RefreshToken)
        .where(col(RefreshToken.token_hash) == hash_refresh_token(refresh_token))
        .where(col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    await db.commit()


async def revoke_all_refresh_tokens(db: AsyncSession, *, actor: User) -> None:
    """Sign out everywhere: every refresh token of the actor stops working now."""
    await db.exec(
        update(RefreshToken)
        .where(col(RefreshToken.user_id) == actor.id)
        .where(col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    await db.commit()
