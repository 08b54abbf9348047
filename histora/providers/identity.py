"""Firebase Auth behind a Protocol: verify ID tokens, sign in and up with a password.

Token checks run through firebase-admin (with ``check_revoked=True``, the only way
disabled and revoked users are caught); password sign-in and sign-up go through the
Identity Toolkit REST API, the route Firebase offers to server code. Against the Auth
emulator firebase-admin accepts unsigned tokens, so ``check_emulator_safety`` only
allows the emulator for ``demo-`` projects, which cannot reach a real Firebase project.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import firebase_admin
import httpx
import structlog
from firebase_admin import auth, credentials
from firebase_admin import exceptions as firebase_exceptions
from google.auth import exceptions as google_auth_exceptions

from histora.errors import (
    ConfigurationError,
    ConflictError,
    HistoraError,
    InvalidInputError,
    ProviderError,
    RateLimitedError,
    UnauthorizedError,
)
from histora.settings import Settings

log = structlog.get_logger(__name__)

# The variable firebase-admin and firebase-tools use for the Auth emulator.
EMULATOR_HOST_VARIABLE = "FIREBASE_AUTH_EMULATOR_HOST"
DEMO_PROJECT_PREFIX = "demo-"
IDENTITY_TOOLKIT_URL = "https://identitytoolkit.googleapis.com/v1"
REQUEST_TIMEOUT_SECONDS = 10.0

BAD_CREDENTIALS = "Email or password is incorrect."
EMAIL_TAKEN = "An account with this email already exists."
INVALID_EMAIL = "Enter a valid email address."
# User-facing messages about passwords, not passwords (hence the S105 waivers).
MISSING_PASSWORD = "Enter a password."  # noqa: S105
WEAK_PASSWORD = "That password is too weak: use at least 6 characters."  # noqa: S105
PASSWORD_REQUIREMENTS = "That password does not meet the password requirements."  # noqa: S105
# Firebase's own minimum; it answers WEAK_PASSWORD below it.
FIREBASE_MIN_PASSWORD_LENGTH = 6

# Sign-in failures that are the caller's: all answer the same, so they reveal
# neither which emails have accounts nor which accounts are disabled.
_SIGN_IN_REFUSALS = frozenset(
    {
        "EMAIL_NOT_FOUND",
        "INVALID_PASSWORD",
        "INVALID_LOGIN_CREDENTIALS",
        "USER_DISABLED",
        "INVALID_EMAIL",
        "MISSING_EMAIL",
        "MISSING_PASSWORD",
    }
)
_SIGN_UP_REFUSALS: dict[str, tuple[type[HistoraError], str]] = {
    "EMAIL_EXISTS": (ConflictError, EMAIL_TAKEN),
    "WEAK_PASSWORD": (InvalidInputError, WEAK_PASSWORD),
    "PASSWORD_DOES_NOT_MEET_REQUIREMENTS": (InvalidInputError, PASSWORD_REQUIREMENTS),
    "INVALID_EMAIL": (InvalidInputError, INVALID_EMAIL),
    "MISSING_EMAIL": (InvalidInputError, INVALID_EMAIL),
    "MISSING_PASSWORD": (InvalidInputError, MISSING_PASSWORD),
}

# Every way firebase-admin says "this token does not let anyone in". Revoked and
# expired tokens are subclasses of InvalidIdTokenError; an empty token is a ValueError.
_TOKEN_REFUSALS = (
    auth.InvalidIdTokenError,
    auth.UserDisabledError,
    auth.UserNotFoundError,
    ValueError,
)


@dataclass(frozen=True, slots=True)
class FirebaseClaims:
    """What Histora takes from a verified ID token. Roles never come from here."""

    uid: str
    email: str | None
    email_verified: bool
    display_name: str | None


class IdentityProvider(Protocol):
    async def verify_id_token(self, id_token: str) -> FirebaseClaims:
        """The token's claims; ``UnauthorizedError`` for any token that must not sign in."""
        ...

    async def sign_in_with_password(self, email: str, password: str) -> str:
        """A fresh Firebase ID token for these credentials."""
        ...

    async def sign_up(self, email: str, password: str, display_name: str) -> str:
        """Create the Firebase account and return its first ID token."""
        ...


def check_emulator_safety(settings: Settings) -> None:
    """Refuse the Auth emulator outside ``demo-`` projects.

    With the emulator configured firebase-admin skips signature and expiry checks,
    so anyone could mint a token for any uid. Called when the app starts and when
    the provider is built.
    """
    if not settings.firebase_auth_emulator_host:
        return
    project_id = settings.firebase_project_id or ""
    if not project_id.startswith(DEMO_PROJECT_PREFIX):
        raise ConfigurationError(
            f"{EMULATOR_HOST_VARIABLE} is set for project '{project_id}': the emulator accepts "
            "unsigned tokens, so it is only allowed for demo- projects. Unset it or use a "
            "demo-... project id."
        )


def _share_emulator_host_with_firebase_admin(host: str | None) -> None:
    """Make firebase-admin see the emulator setting Histora's settings chose.

    firebase-admin reads FIREBASE_AUTH_EMULATOR_HOST from os.environ only, while
    settings also take it from HISTORA_FIREBASE_AUTH_EMULATOR_HOST and .env; this
    is the one place outside settings that touches the environment, for that reason.
    If the process already has a different value, firebase-admin would act on it
    (perhaps skipping signature checks) while the guard above looked at another
    value, so that is refused rather than silently overridden.
    """
    current = os.environ.get(EMULATOR_HOST_VARIABLE) or None
    if host is not None and current is None:
        os.environ[EMULATOR_HOST_VARIABLE] = host
    elif current != host:
        raise ConfigurationError(
            f"{EMULATOR_HOST_VARIABLE} in the process environment ({current!r}) differs from "
            f"the configured emulator host ({host!r}); firebase-admin would use the former. "
            f"Set {EMULATOR_HOST_VARIABLE} or HISTORA_FIREBASE_AUTH_EMULATOR_HOST to one value."
        )


def _required(value: str | None, variable: str) -> str:
    if not value:
        raise ConfigurationError(f"{variable} is required when HISTORA_AUTH_MODE=firebase.")
    return value


class FirebaseIdentityProvider:
    """Firebase Auth through firebase-admin (tokens) and the Identity Toolkit API (passwords)."""

    def __init__(self, settings: Settings) -> None:
        check_emulator_safety(settings)
        self._project_id = _required(settings.firebase_project_id, "HISTORA_FIREBASE_PROJECT_ID")
        api_key = settings.firebase_web_api_key
        self._api_key = _required(
            api_key.get_secret_value() if api_key else None, "HISTORA_FIREBASE_WEB_API_KEY"
        )
        emulator_host = settings.firebase_auth_emulator_host or None
        self._credentials_file = settings.firebase_credentials_file
        if emulator_host is None and self._credentials_file is None:
            # check_revoked looks the user up with the Admin API, which needs a service
            # account; the emulator accepts any caller instead.
            raise ConfigurationError(
                "HISTORA_FIREBASE_CREDENTIALS_FILE is required when HISTORA_AUTH_MODE=firebase: "
                "the path of a service account key file for the Firebase project."
            )
        if emulator_host is not None and "//" in emulator_host:
            raise ConfigurationError(
                f"{EMULATOR_HOST_VARIABLE} must be host:port, without a scheme."
            )
        _share_emulator_host_with_firebase_admin(emulator_host)
        if emulator_host is None:
            self._base_url = IDENTITY_TOOLKIT_URL
        else:
            self._base_url = f"http://{emulator_host}/identitytoolkit.googleapis.com/v1"
        # A named app of our own, so nothing else in the process that uses the default
        # app can change our project or credentials (or be changed by us).
        self._app_name = f"histora-identity-{self._project_id}-{uuid.uuid4().hex[:8]}"
        self._app: firebase_admin.App | None = None
        self._app_lock = threading.Lock()
        # The API key travels in a header rather than ?key=, so it never appears in a
        # URL that an error message or an access log might record.
        self._http = httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT_SECONDS, headers={"X-Goog-Api-Key": self._api_key}
        )

    @property
    def app(self) -> firebase_admin.App:
        """The firebase-admin app, built on first use (it may read the credentials file)."""
        with self._app_lock:
            if self._app is None:
                credential = None
                if self._credentials_file is not None:
                    credential = _load_credential(self._credentials_file)
                # Without a credential (emulator only, enforced above) firebase-admin
                # talks to the emulator with its own stand-in credential.
                self._app = firebase_admin.initialize_app(
                    credential, options={"projectId": self._project_id}, name=self._app_name
                )
            return self._app

    async def verify_id_token(self, id_token: str) -> FirebaseClaims:
        try:
            decoded = await asyncio.to_thread(self._verify_sync, id_token)
        except _TOKEN_REFUSALS as exc:
            # Only the kind of failure is logged: the messages can quote the token.
            log.info("identity.token_refused", reason=type(exc).__name__)
            raise UnauthorizedError() from None
        except (firebase_exceptions.FirebaseError, google_auth_exceptions.GoogleAuthError) as exc:
            # CertificateFetchError, an unreachable Admin API or a failed credential
            # refresh: the service is down, which is not the caller's fault, so it is
            # not answered as "sign in again".
            log.warning("identity.verify_unavailable", reason=type(exc).__name__)
            raise ProviderError(
                detail=f"Firebase token check failed: {type(exc).__name__}"
            ) from None
        return _claims_from(decoded)

    def _verify_sync(self, id_token: str) -> dict[str, Any]:
        decoded: dict[str, Any] = auth.verify_id_token(id_token, app=self.app, check_revoked=True)
        return decoded

    async def sign_in_with_password(self, email: str, password: str) -> str:
        body = {"email": email, "password": password, "returnSecureToken": True}
        code, data = await self._post("signInWithPassword", body)
        if code is None:
            return _id_token_from(data)
        if code in _SIGN_IN_REFUSALS:
            raise UnauthorizedError(BAD_CREDENTIALS)
        raise _unexpected(code, "signInWithPassword")

    async def sign_up(self, email: str, password: str, display_name: str) -> str:
        body = {
            "email": email,
            "password": password,
            "displayName": display_name,
            "returnSecureToken": True,
        }
        code, data = await self._post("signUp", body)
        if code is None:
            return _id_token_from(data)
        refusal = _SIGN_UP_REFUSALS.get(code)
        if refusal is not None:
            error_type, message = refusal
            raise error_type(message)
        raise _unexpected(code, "signUp")

    async def _post(self, method: str, body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """(None, response body) on success, or (Firebase error code, {}) on a refusal."""
        try:
            response = await self._http.post(f"{self._base_url}/accounts:{method}", json=body)
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("identity.request_failed", method=method, reason=type(exc).__name__)
            raise ProviderError(detail=f"Identity Toolkit {method} failed") from None
        if not isinstance(data, dict):
            raise ProviderError(detail=f"Identity Toolkit {method}: unexpected response")
        if response.is_success:
            return None, data
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        # Messages look like "WEAK_PASSWORD : Password should be at least 6 characters".
        code = message.split(" ", 1)[0] if isinstance(message, str) and message else ""
        return code or f"HTTP_{response.status_code}", {}

    async def aclose(self) -> None:
        await self._http.aclose()
        with self._app_lock:
            if self._app is not None:
                firebase_admin.delete_app(self._app)
                self._app = None


def _load_credential(path: Path) -> credentials.Certificate:
    try:
        return credentials.Certificate(str(path))
    except (OSError, ValueError) as exc:
        # Raised as configuration, not as ValueError, which callers read as a bad token.
        raise ConfigurationError(
            f"HISTORA_FIREBASE_CREDENTIALS_FILE ({path}) is not a readable service account "
            f"key file ({type(exc).__name__})."
        ) from None


def _unexpected(code: str, method: str) -> HistoraError:
    """Errors that are ours or Firebase's, not the user's: rate limits and outages."""
    if code == "TOO_MANY_ATTEMPTS_TRY_LATER":
        return RateLimitedError(retry_after=60)
    # Codes are Firebase's fixed vocabulary (never user data), so they are safe to log.
    log.warning("identity.request_refused", method=method, code=code)
    return ProviderError(detail=f"Identity Toolkit {method} refused: {code}")


def _id_token_from(data: dict[str, Any]) -> str:
    token = data.get("idToken")
    if not isinstance(token, str) or not token:
        raise ProviderError(detail="Identity Toolkit answered without an ID token")
    return token


def _claims_from(decoded: dict[str, Any]) -> FirebaseClaims:
    email = decoded.get("email")
    name = decoded.get("name")
    return FirebaseClaims(
        uid=str(decoded["uid"]),
        email=email if isinstance(email, str) and email else None,
        email_verified=decoded.get("email_verified") is True,
        display_name=name if isinstance(name, str) and name.strip() else None,
    )
