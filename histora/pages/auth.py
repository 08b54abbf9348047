"""Sign in and sign up."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import reflex as rx
import structlog

from histora import deps
from histora.components.google_sign_in import FirebaseGoogleSignIn, google_sign_in_script
from histora.components.layout import page_layout
from histora.errors import HistoraError
from histora.models import User
from histora.services import sign_in as sign_in_service
from histora.state.session import SessionState

log = structlog.get_logger(__name__)


def _next_path(raw: str) -> str:
    # Only same-site paths: never redirect to another origin after signing in.
    # Browsers read a backslash as a slash, so "/\\evil.example" is another origin too.
    safe = raw.startswith("/") and not raw.startswith("//") and "\\" not in raw
    return raw if safe else "/"


GOOGLE_ERRORS = {
    "auth/popup-closed-by-user": "Google sign-in was cancelled.",
    "auth/cancelled-popup-request": "Google sign-in was cancelled.",
    "auth/user-cancelled": "Google sign-in was cancelled.",
    "auth/popup-blocked": (
        "Your browser blocked the Google sign-in window. Allow pop-ups for this site and try again."
    ),
    "auth/network-request-failed": (
        "Google sign-in could not reach Google. Check your connection and try again."
    ),
    # The popup flow first loads Google's iframe library; it fails this way when Google
    # cannot be reached.
    "auth/internal-error": ("Google sign-in could not start. Check your connection and try again."),
    "auth/account-exists-with-different-credential": (
        "An account with this email already exists. Sign in with your password."
    ),
}
GOOGLE_FAILED = "Google sign-in did not work. Please try again or use your password."
MAX_ID_TOKEN_CHARS = 16_384

# A sign_in_service entry point: (db, *, limiter, identity, ip, settings, **fields) -> User.
SignInCall = Callable[..., Awaitable[User]]


class AuthFormState(rx.State):
    error: str = ""
    busy: bool = False
    google_enabled: bool = False
    # "?next=…" while the page was opened to come back somewhere after signing in, so
    # the link between sign-in and sign-up keeps the way back.
    next_query: str = ""

    async def _complete(self, call: SignInCall, **fields: str) -> rx.event.EventSpec | None:
        """Runs one sign-in attempt; signs the browser in or shows a friendly error."""
        self.busy, self.error = True, ""
        session = await self.get_state(SessionState)
        container = deps.get_container()
        try:
            async with deps.db_session() as db:
                user = await call(
                    db,
                    limiter=container.rate_limiter,
                    identity=container.identity,
                    ip=session.router.session.client_ip or "unknown",
                    settings=container.settings,
                    **fields,
                )
                await session._sign_in_as(db, user)
        except HistoraError as exc:
            self.error = exc.public_message
            return None
        finally:
            self.busy = False
        return rx.redirect(_next_path(self.router.url.query_parameters.get("next", "/")))

    @rx.event
    async def sign_in(self, form: dict[str, str]) -> rx.event.EventSpec | None:
        if self.busy:
            return None
        return await self._complete(
            sign_in_service.sign_in,
            email=form.get("email", ""),
            password=form.get("password", ""),
        )

    @rx.event
    async def sign_up(self, form: dict[str, str]) -> rx.event.EventSpec | None:
        if self.busy:
            return None
        return await self._complete(
            sign_in_service.sign_up,
            email=form.get("email", ""),
            password=form.get("password", ""),
            display_name=form.get("display_name", ""),
        )

    @rx.event
    def start_google_sign_in(self) -> rx.event.EventSpec | None:
        """Opens Google's window in the browser; its answer comes to finish_google_sign_in."""
        config = sign_in_service.google_sign_in_config(deps.get_container().settings)
        if config is None or self.busy:
            return None
        self.busy, self.error = True, ""
        return rx.call_script(
            google_sign_in_script(json.dumps(config.as_browser_config())),
            callback=AuthFormState.finish_google_sign_in,
        )

    @rx.event
    async def finish_google_sign_in(self, result: dict[str, Any]) -> rx.event.EventSpec | None:
        id_token = result.get("idToken") if isinstance(result, dict) else None
        if not isinstance(id_token, str) or not 0 < len(id_token) <= MAX_ID_TOKEN_CHARS:
            code = result.get("error") if isinstance(result, dict) else None
            log.info("google_sign_in_failed", code=str(code)[:80])
            self.busy, self.error = False, GOOGLE_ERRORS.get(str(code), GOOGLE_FAILED)
            return None

        return await self._complete(sign_in_service.exchange_firebase_token, id_token=id_token)

    @rx.event
    def clear(self) -> None:
        self.error, self.busy = "", False
        next_path = _next_path(self.router.url.query_parameters.get("next", "/"))
        self.next_query = "" if next_path == "/" else "?" + urlencode({"next": next_path})
        settings = deps.get_container().settings
        self.google_enabled = sign_in_service.google_sign_in_config(settings) is not None


def _field(label: str, name: str, kind: str = "text", **props: object) -> rx.Component:
    return rx.vstack(
        rx.el.label(label, html_for=name, style={"font_size": "14px", "font_weight": "500"}),
        rx.input(
            name=name,
            id=name,
            type=kind,
            required=True,
            size="3",
            width="100%",
            aria_label=label,
            **props,
        ),
        spacing="1",
        width="100%",
    )


def _card(title: str, form: rx.Component, footer: rx.Component) -> rx.Component:
    return page_layout(
        rx.center(
            rx.card(
                rx.vstack(
                    rx.heading(title, size="6"),
                    rx.cond(
                        AuthFormState.error != "",
                        rx.callout(
                            AuthFormState.error,
                            icon="triangle_alert",
                            color_scheme="red",
                            data_testid="auth-error",
                        ),
                    ),
                    form,
                    _google_option(),
                    footer,
                    spacing="4",
                    width="100%",
                ),
                width="100%",
                max_width="420px",
                padding="var(--space-5)",
            ),
            padding_y="var(--space-6)",
        )
    )


def _google_option() -> rx.Component:
    return rx.fragment(
        FirebaseGoogleSignIn.create(),
        rx.cond(
            AuthFormState.google_enabled,
            rx.vstack(
                rx.hstack(
                    rx.separator(size="4"),
                    rx.text("or", size="2", color_scheme="gray"),
                    rx.separator(size="4"),
                    align="center",
                    width="100%",
                ),
                rx.button(
                    "Continue with Google",
                    type="button",
                    size="3",
                    variant="outline",
                    width="100%",
                    loading=AuthFormState.busy,
                    on_click=AuthFormState.start_google_sign_in,
                    data_testid="google-sign-in",
                ),
                spacing="3",
                width="100%",
            ),
        ),
    )


def _form(
    *fields: rx.Component, submit: str, test_id: str, on_submit: rx.EventHandler
) -> rx.Component:
    return rx.form(
        rx.vstack(
            *fields,
            rx.button(
                submit,
                type="submit",
                size="3",
                width="100%",
                loading=AuthFormState.busy,
                data_testid=test_id,
            ),
            spacing="3",
            width="100%",
        ),
        on_submit=on_submit,
        width="100%",
    )


_ON_LOAD = [AuthFormState.clear, SessionState.restore]


# The other names people type for these pages open them too, instead of a 404.
@rx.page(route="/login", title="Sign in · Histora", on_load=_ON_LOAD)
@rx.page(route="/signin", title="Sign in · Histora", on_load=_ON_LOAD)
def login_page() -> rx.Component:
    return _card(
        "Sign in",
        _form(
            _field("Email", "email", "email", auto_complete="email"),
            _field("Password", "password", "password", auto_complete="current-password"),
            submit="Sign in",
            test_id="sign-in",
            on_submit=AuthFormState.sign_in,
        ),
        rx.text(
            "New here? ",
            rx.link("Create an account", href="/register" + AuthFormState.next_query),
            size="2",
        ),
    )


@rx.page(route="/register", title="Create an account · Histora", on_load=_ON_LOAD)
@rx.page(route="/signup", title="Create an account · Histora", on_load=_ON_LOAD)
def register_page() -> rx.Component:
    return _card(
        "Create an account",
        _form(
            _field("Name", "display_name", auto_complete="name", max_length=80),
            _field("Email", "email", "email", auto_complete="email"),
            _field(
                "Password (10+ characters)",
                "password",
                "password",
                auto_complete="new-password",
                min_length=10,
            ),
            submit="Create account",
            test_id="sign-up",
            on_submit=AuthFormState.sign_up,
        ),
        rx.text(
            "Already have an account? ",
            rx.link("Sign in", href="/login" + AuthFormState.next_query),
            size="2",
        ),
    )
