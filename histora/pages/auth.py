"""Sign in and sign up."""

from __future__ import annotations

import reflex as rx

from histora import deps
from histora.components.layout import page_layout
from histora.errors import HistoraError
from histora.services import sign_in as sign_in_service
from histora.state.session import SessionState


def _next_path(raw: str) -> str:
    # Only same-site paths: never redirect to another origin after signing in.
    # Browsers read a backslash as a slash, so "/\\evil.example" is another origin too.
    safe = raw.startswith("/") and not raw.startswith("//") and "\\" not in raw
    return raw if safe else "/"


class AuthFormState(rx.State):
    error: str = ""
    busy: bool = False

    async def _finish(self, user_action: str, form: dict[str, str]) -> rx.event.EventSpec | None:
        if self.busy:
            return None
        self.busy, self.error = True, ""
        session = await self.get_state(SessionState)
        container = deps.get_container()
        settings = container.settings
        ip = session.router.session.client_ip or "unknown"
        email = form.get("email", "")
        try:
            async with deps.db_session() as db:
                if user_action == "register":
                    user = await sign_in_service.sign_up(
                        db,
                        limiter=container.rate_limiter,
                        identity=container.identity,
                        email=email,
                        password=form.get("password", ""),
                        display_name=form.get("display_name", ""),
                        ip=ip,
                        settings=settings,
                    )
                else:
                    user = await sign_in_service.sign_in(
                        db,
                        limiter=container.rate_limiter,
                        identity=container.identity,
                        email=email,
                        password=form.get("password", ""),
                        ip=ip,
                        settings=settings,
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
        return await self._finish("login", form)

    @rx.event
    async def sign_up(self, form: dict[str, str]) -> rx.event.EventSpec | None:
        return await self._finish("register", form)

    @rx.event
    def clear(self) -> None:
        self.error, self.busy = "", False


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


@rx.page(
    route="/login",
    title="Sign in · Histora",
    on_load=[AuthFormState.clear, SessionState.restore],
)
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
        rx.text("New here? ", rx.link("Create an account", href="/register"), size="2"),
    )


@rx.page(
    route="/register",
    title="Create an account · Histora",
    on_load=[AuthFormState.clear, SessionState.restore],
)
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
        rx.text("Already have an account? ", rx.link("Sign in", href="/login"), size="2"),
    )
