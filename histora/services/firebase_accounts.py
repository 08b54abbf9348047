"""Our user row for a verified Firebase identity: found by uid, linked by email, or created.

Firebase proves who someone is; everything Histora decides about them (role, credits,
the disabled flag) lives in our database, so nothing here reads roles from a token.
"""

from __future__ import annotations

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import ConflictError, UnauthorizedError
from histora.models import CreditLedgerEntry, CreditReason, Role, User
from histora.models.base import utcnow
from histora.providers.identity import FirebaseClaims
from histora.services.users import normalise_email

log = structlog.get_logger(__name__)

UNVERIFIED_EMAIL_TAKEN = "An account with this email already exists; sign in with your password."
LINKED_ELSEWHERE = "This email is already linked to a different sign-in."
ACCOUNT_DISABLED = "This account has been disabled."
NO_EMAIL = "Sign in with an account that has an email address."
MAX_DISPLAY_NAME_LENGTH = 80


async def upsert_firebase_user(
    db: AsyncSession, *, claims: FirebaseClaims, signup_credits: int
) -> User:
    """The user for these verified claims, creating or linking the row on first sign-in."""
    user = await _by_uid(db, claims.uid)
    if user is None:
        email = _email_of(claims)
        user = (await db.exec(select(User).where(User.email == email))).first()
        if user is None:
            user = await _create(db, claims=claims, email=email, signup_credits=signup_credits)
        else:
            _check_can_link(user, claims)
            user.firebase_uid = claims.uid
            log.info("firebase.linked", user_id=str(user.id))
    if user.disabled:
        raise UnauthorizedError(ACCOUNT_DISABLED)
    user.last_login_at = utcnow()
    db.add(user)
    await db.commit()
    return user


async def _by_uid(db: AsyncSession, uid: str) -> User | None:
    return (await db.exec(select(User).where(User.firebase_uid == uid))).first()


def _email_of(claims: FirebaseClaims) -> str:
    # Anonymous and phone-only Firebase users have no email, and every account needs one.
    if not claims.email:
        raise UnauthorizedError(NO_EMAIL)
    return normalise_email(claims.email)


def _check_can_link(user: User, claims: FirebaseClaims) -> None:
    """Only a verified email proves the caller owns an account made some other way."""
    if user.disabled:
        raise UnauthorizedError(ACCOUNT_DISABLED)
    if not claims.email_verified:
        # Firebase lets anyone sign up with any address unverified; linking on that
        # would hand them the existing account.
        raise ConflictError(UNVERIFIED_EMAIL_TAKEN)
    if user.firebase_uid is not None:
        # Another Firebase identity already owns this row; taking it over is not ours to do.
        raise ConflictError(LINKED_ELSEWHERE)


async def _create(
    db: AsyncSession, *, claims: FirebaseClaims, email: str, signup_credits: int
) -> User:
    # The name comes from the identity provider, not a form: a NUL in it (which
    # PostgreSQL cannot store) is dropped rather than refusing the sign-in.
    name = (claims.display_name or "").replace("\x00", "").strip() or email.split("@", 1)[0]
    user = User(
        email=email,
        display_name=name[:MAX_DISPLAY_NAME_LENGTH],
        role=Role.USER,
        firebase_uid=claims.uid,
        credits=signup_credits,
    )
    db.add(user)
    try:
        await db.flush()  # the user row first: the ledger entry references it
        if user.credits:
            db.add(
                CreditLedgerEntry(
                    user_id=user.id,
                    delta=user.credits,
                    balance_after=user.credits,
                    reason=CreditReason.SIGNUP,
                    reference="signup",  # with the unique constraint: granted at most once
                )
            )
        await db.commit()
    except IntegrityError:
        # A concurrent first sign-in of the same identity created the row first.
        await db.rollback()
        existing = await _by_uid(db, claims.uid)
        if existing is None:
            raise ConflictError(UNVERIFIED_EMAIL_TAKEN) from None
        return existing
    log.info("firebase.user_created", user_id=str(user.id))
    return user
