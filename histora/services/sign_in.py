"""Signing in and up, with rate limits, for every front end and both auth modes.

Local mode checks passwords here; Firebase mode asks Firebase and keeps roles,
credits and the disabled flag in our database.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from histora.errors import ConfigurationError, InvalidInputError
from histora.models import User
from histora.providers.identity import IdentityProvider
from histora.services import auth as auth_service
from histora.services import firebase_accounts
from histora.services.rate_limits import RateLimiter
from histora.services.users import normalise_email
from histora.settings import Settings


def _firebase(identity: IdentityProvider | None) -> IdentityProvider:
    if identity is None:
        raise ConfigurationError("HISTORA_AUTH_MODE=firebase needs the Firebase settings.")
    return identity


async def sign_in(
    db: AsyncSession,
    *,
    limiter: RateLimiter,
    identity: IdentityProvider | None,
    email: str,
    password: str,
    ip: str,
    settings: Settings,
) -> User:
    """Rate limited by address and by account, so neither can be brute-forced."""
    await limiter.hit(settings.login_rate_limit, "login-ip", ip)
    await limiter.hit(settings.login_rate_limit, "login-account", normalise_email(email))
    if settings.auth_mode == "firebase":
        provider = _firebase(identity)
        claims = await provider.verify_id_token(
            await provider.sign_in_with_password(normalise_email(email), password)
        )
        return await firebase_accounts.upsert_firebase_user(
            db, claims=claims, signup_credits=settings.signup_credits
        )
    return await auth_service.authenticate(db, email=email, password=password, settings=settings)


async def sign_up(
    db: AsyncSession,
    *,
    limiter: RateLimiter,
    identity: IdentityProvider | None,
    email: str,
    password: str,
    display_name: str,
    ip: str,
    settings: Settings,
) -> User:
    await limiter.hit(settings.register_rate_limit, "register-ip", ip)
    if settings.auth_mode == "firebase":
        provider = _firebase(identity)
        claims = await provider.verify_id_token(
            await provider.sign_up(normalise_email(email), password, display_name)
        )
        return await firebase_accounts.upsert_firebase_user(
            db, claims=claims, signup_credits=settings.signup_credits
        )
    return await auth_service.register(
        db, email=email, password=password, display_name=display_name, settings=settings
    )


async def exchange_firebase_token(
    db: AsyncSession,
    *,
    limiter: RateLimiter,
    identity: IdentityProvider | None,
    id_token: str,
    ip: str,
    settings: Settings,
) -> User:
    """A Firebase ID token obtained elsewhere (e.g. Google sign-in) for our session."""
    await limiter.hit(settings.login_rate_limit, "login-ip", ip)
    if settings.auth_mode != "firebase":
        raise InvalidInputError("Firebase sign-in is not enabled on this server.")
    claims = await _firebase(identity).verify_id_token(id_token)
    return await firebase_accounts.upsert_firebase_user(
        db, claims=claims, signup_credits=settings.signup_credits
    )


@dataclass(frozen=True)
class GoogleSignInConfig:
    """What the browser's Firebase SDK needs for Google sign-in. None of it is secret:
    Firebase web API keys identify the project and are meant to be shipped to browsers."""

    api_key: str
    auth_domain: str
    project_id: str
    emulator_url: str | None

    def as_browser_config(self) -> dict[str, str | None]:
        return {
            "apiKey": self.api_key,
            "authDomain": self.auth_domain,
            "projectId": self.project_id,
            "emulatorUrl": self.emulator_url,
        }


def google_sign_in_config(settings: Settings) -> GoogleSignInConfig | None:
    """The web config when Google sign-in is offered, else None."""
    api_key = settings.firebase_web_api_key
    if (
        settings.auth_mode != "firebase"
        or not settings.firebase_auth_domain
        or not settings.firebase_project_id
        or api_key is None
    ):
        return None
    host = settings.firebase_auth_emulator_host
    return GoogleSignInConfig(
        api_key=api_key.get_secret_value(),
        auth_domain=settings.firebase_auth_domain,
        project_id=settings.firebase_project_id,
        emulator_url=f"http://{host}" if host else None,
    )
