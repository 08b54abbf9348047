from __future__ import annotations

import uuid

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import ConflictError, UnauthorizedError
from histora.models import CreditLedgerEntry, CreditReason, Role
from histora.providers.fakes import FakeIdentityProvider
from histora.providers.identity import FirebaseClaims
from histora.services.firebase_accounts import (
    LINKED_ELSEWHERE,
    UNVERIFIED_EMAIL_TAKEN,
    upsert_firebase_user,
)
from histora.settings import Settings
from tests.factories import make_user


def _email() -> str:
    return f"firebase-{uuid.uuid4().hex[:8]}@example.com"


async def _claims(
    identity: FakeIdentityProvider,
    email: str,
    *,
    display_name: str | None = None,
    email_verified: bool = False,
) -> FirebaseClaims:
    account = identity.add_account(email, display_name=display_name, email_verified=email_verified)
    return await identity.verify_id_token(identity.token_for(account.uid))


@pytest.fixture
def identity() -> FakeIdentityProvider:
    return FakeIdentityProvider()


async def test_first_sign_in_creates_user_with_signup_credits(
    db: AsyncSession, settings: Settings, identity: FakeIdentityProvider
) -> None:
    email = _email()
    claims = await _claims(identity, email.upper(), display_name="Ada Lovelace")

    user = await upsert_firebase_user(db, claims=claims, signup_credits=settings.signup_credits)

    assert user.email == email
    assert (user.firebase_uid, user.display_name) == (claims.uid, "Ada Lovelace")
    assert user.role == Role.USER and not user.disabled
    assert user.credits == settings.signup_credits and user.last_login_at is not None
    ledger = (
        await db.exec(select(CreditLedgerEntry).where(CreditLedgerEntry.user_id == user.id))
    ).all()
    assert [(e.delta, e.reason) for e in ledger] == [(settings.signup_credits, CreditReason.SIGNUP)]


async def test_display_name_defaults_to_the_email_local_part(
    db: AsyncSession, identity: FakeIdentityProvider
) -> None:
    claims = await _claims(identity, "grace.hopper@example.com")

    user = await upsert_firebase_user(db, claims=claims, signup_credits=0)

    assert user.display_name == "grace.hopper"
    assert user.credits == 0


async def test_a_nul_in_the_providers_name_is_dropped_not_stored(
    db: AsyncSession, identity: FakeIdentityProvider
) -> None:
    # PostgreSQL cannot store U+0000; a name from Google is not ours to refuse.
    claims = await _claims(identity, _email(), display_name="Ada\x00 Lovelace")
    named = await upsert_firebase_user(db, claims=claims, signup_credits=0)
    claims = await _claims(identity, "only.nul@example.com", display_name="\x00")
    unnamed = await upsert_firebase_user(db, claims=claims, signup_credits=0)

    assert (named.display_name, unnamed.display_name) == ("Ada Lovelace", "only.nul")


async def test_next_sign_in_finds_user_by_uid_and_keeps_our_role(
    db: AsyncSession, identity: FakeIdentityProvider
) -> None:
    claims = await _claims(identity, _email())
    first = await upsert_firebase_user(db, claims=claims, signup_credits=10)
    first.role = Role.ADMIN  # granted in Histora, never by the token
    db.add(first)
    await db.commit()

    again = await upsert_firebase_user(db, claims=claims, signup_credits=10)

    assert again.id == first.id
    assert again.role == Role.ADMIN and again.credits == 10


async def test_verified_email_links_existing_account(
    db: AsyncSession, identity: FakeIdentityProvider
) -> None:
    existing = await make_user(db, email=_email(), credits=7)
    claims = await _claims(identity, existing.email, email_verified=True)

    user = await upsert_firebase_user(db, claims=claims, signup_credits=100)

    assert user.id == existing.id
    assert user.firebase_uid == claims.uid
    assert user.credits == 7  # linking grants nothing


async def test_unverified_email_matching_an_account_is_refused(
    db: AsyncSession, identity: FakeIdentityProvider
) -> None:
    existing = await make_user(db, email=_email())
    claims = await _claims(identity, existing.email, email_verified=False)

    with pytest.raises(ConflictError) as raised:
        await upsert_firebase_user(db, claims=claims, signup_credits=100)

    assert raised.value.public_message == UNVERIFIED_EMAIL_TAKEN
    await db.refresh(existing)
    assert existing.firebase_uid is None


async def test_email_linked_to_another_firebase_identity_is_refused(db: AsyncSession) -> None:
    existing = await make_user(db, email=_email(), firebase_uid="another-uid")
    claims = FirebaseClaims(
        uid="a-new-uid", email=existing.email, email_verified=True, display_name=None
    )

    with pytest.raises(ConflictError) as raised:
        await upsert_firebase_user(db, claims=claims, signup_credits=100)

    assert raised.value.public_message == LINKED_ELSEWHERE


async def test_disabled_user_is_refused(db: AsyncSession, identity: FakeIdentityProvider) -> None:
    claims = await _claims(identity, _email())
    user = await upsert_firebase_user(db, claims=claims, signup_credits=0)
    user.disabled = True
    db.add(user)
    await db.commit()

    with pytest.raises(UnauthorizedError):
        await upsert_firebase_user(db, claims=claims, signup_credits=0)


async def test_disabled_account_is_not_linked(
    db: AsyncSession, identity: FakeIdentityProvider
) -> None:
    existing = await make_user(db, email=_email(), disabled=True)
    claims = await _claims(identity, existing.email, email_verified=True)

    with pytest.raises(UnauthorizedError):
        await upsert_firebase_user(db, claims=claims, signup_credits=0)

    await db.refresh(existing)
    assert existing.firebase_uid is None


async def test_identity_without_email_is_refused(db: AsyncSession) -> None:
    claims = FirebaseClaims(uid="phone-only", email=None, email_verified=False, display_name=None)

    with pytest.raises(UnauthorizedError):
        await upsert_firebase_user(db, claims=claims, signup_credits=0)
