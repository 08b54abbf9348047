"""The sign-in page: where it sends people afterwards, and Google sign-in."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import reflex as rx
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.models import User
from histora.models.users import UserPublic
from histora.pages.auth import AuthFormState, _next_path
from histora.services import sign_in as sign_in_service
from histora.state.session import SessionState
from tests.conftest import FakeProvidersContainer
from tests.factories import make_user
from tests.support import emulator_google_id_token, reflex_root, substate


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("/chat/socrates", "/chat/socrates"),
        ("/profile", "/profile"),
        ("//evil.example/phish", "/"),
        ("https://evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
    ],
)
def test_next_path_stays_on_this_site(requested: str, expected: str) -> None:
    assert _next_path(requested) == expected


# --- Google sign-in: the page's handlers around the Firebase JS SDK -----------------------


def _auth_form(container: FakeProvidersContainer) -> AuthFormState:
    state = substate(reflex_root(), AuthFormState)
    AuthFormState.clear.fn(state)
    return state


async def _signed_in_user(state: AuthFormState) -> UserPublic | None:
    session = await state.get_state(SessionState)
    return session.user


def _called_script(spec: rx.event.EventSpec) -> str:
    """The JavaScript an `rx.call_script` spec will run in the browser."""
    for key, value in spec.args:
        if str(key).strip('"') == "javascript_code":
            return str(getattr(value, "_var_value", value))
    raise AssertionError(f"no script in {spec.args!r}")


def test_google_sign_in_is_offered_only_with_a_firebase_web_config(
    container: FakeProvidersContainer,
) -> None:
    assert sign_in_service.google_sign_in_config(container.settings) is None
    state = _auth_form(container)
    assert not state.google_enabled
    assert AuthFormState.start_google_sign_in.fn(state) is None
    assert not state.busy


async def test_start_google_sign_in_calls_the_sdk_with_the_web_config(
    firebase_container: FakeProvidersContainer,
) -> None:
    state = _auth_form(firebase_container)
    assert state.google_enabled

    spec = AuthFormState.start_google_sign_in.fn(state)

    assert isinstance(spec, rx.event.EventSpec)
    script = _called_script(spec)
    assert "historaGoogleSignIn(" in script
    assert '"authDomain": "demo-histora.firebaseapp.com"' in script
    host = firebase_container.settings.firebase_auth_emulator_host
    assert f'"emulatorUrl": "http://{host}"' in script
    assert state.busy  # a second click waits for this attempt
    assert AuthFormState.start_google_sign_in.fn(state) is None


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"error": "auth/popup-closed-by-user"}, "Google sign-in was cancelled."),
        ({"error": "auth/popup-blocked"}, "Allow pop-ups for this site"),
        ({"error": "auth/internal-error"}, "could not start"),
        ({"error": "auth/something-new"}, "did not work"),
        ({"idToken": ""}, "did not work"),
        ({"idToken": "x" * 20_000}, "did not work"),
        ({"idToken": 42}, "did not work"),
        ("not an object", "did not work"),
    ],
)
async def test_failed_google_sign_in_explains_and_signs_nobody_in(
    firebase_container: FakeProvidersContainer, result: Any, message: str
) -> None:
    state = _auth_form(firebase_container)
    state.busy = True

    assert await AuthFormState.finish_google_sign_in.fn(state, result) is None

    assert message in state.error
    assert not state.busy
    assert await _signed_in_user(state) is None


async def test_forged_google_token_is_refused(
    firebase_container: FakeProvidersContainer,
) -> None:
    state = _auth_form(firebase_container)
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
    assert await AuthFormState.finish_google_sign_in.fn(state, {"idToken": forged}) is None
    assert state.error
    assert await _signed_in_user(state) is None


@pytest.mark.firebase
async def test_google_account_signs_in_and_gets_a_session(
    db: AsyncSession, firebase_container: FakeProvidersContainer, emulator_host: str
) -> None:
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    id_token = emulator_google_id_token(
        emulator_host, email=email, name="Ada Lovelace", google_sub=uuid.uuid4().hex
    )
    state = _auth_form(firebase_container)

    redirect = await AuthFormState.finish_google_sign_in.fn(state, {"idToken": id_token})

    assert isinstance(redirect, rx.event.EventSpec)
    user = await _signed_in_user(state)
    assert user is not None and user.email == email and user.display_name == "Ada Lovelace"
    session = await state.get_state(SessionState)
    assert session.refresh_token  # kept by the browser, so a reload stays signed in
    row = (await db.exec(select(User).where(User.email == email))).one()
    assert row.firebase_uid and row.credits == firebase_container.settings.signup_credits


@pytest.mark.firebase
async def test_google_account_links_to_the_existing_account_with_its_email(
    db: AsyncSession, firebase_container: FakeProvidersContainer, emulator_host: str
) -> None:
    existing = await make_user(db)
    id_token = emulator_google_id_token(
        emulator_host, email=existing.email, name="Someone", google_sub=uuid.uuid4().hex
    )
    state = _auth_form(firebase_container)

    await AuthFormState.finish_google_sign_in.fn(state, {"idToken": id_token})

    user = await _signed_in_user(state)
    assert user is not None and user.id == existing.id
