"""Profile: display name, password, API keys, sign out everywhere."""

from __future__ import annotations

import uuid

import reflex as rx

from histora import deps
from histora.components.layout import loading, page_layout
from histora.errors import HistoraError
from histora.models.users import ApiKeyPublic
from histora.services import api_keys as api_keys_service
from histora.services import auth as auth_service
from histora.services import tokens
from histora.state.session import SessionState, acting


class ProfileState(rx.State):
    keys: list[ApiKeyPublic] = []
    new_secret: str = ""
    message: str = ""
    error: str = ""

    async def _run(self, action: str, form: dict[str, str] | None = None, key_id: str = "") -> None:
        session = await self.get_state(SessionState)
        self.error, self.message, self.new_secret = "", "", ""
        form = form or {}
        settings = deps.get_container().settings
        try:
            async with acting(self) as (db, actor):
                if action == "profile":
                    await auth_service.update_profile(
                        db, actor=actor, display_name=form.get("display_name", "")
                    )
                    await session._refresh_user(db)
                    self.message = "Profile saved."
                elif action == "password":
                    await auth_service.change_password(
                        db, actor=actor, current_password=form.get("current_password", ""),
                        new_password=form.get("new_password", ""), settings=settings,
                    )  # fmt: skip
                    await session._sign_in_as(db, actor)
                    self.message = "Password changed. Other devices are signed out."
                elif action == "create_key":
                    _, self.new_secret = await api_keys_service.create_api_key(
                        db, actor=actor, name=form.get("name", "")
                    )
                elif action == "revoke_key":
                    await api_keys_service.revoke_api_key(db, actor=actor, key_id=uuid.UUID(key_id))
                elif action == "logout_all":
                    await tokens.revoke_all_refresh_tokens(db, actor=actor)
                    await session._sign_in_as(db, actor)
                    self.message = "Every other device is signed out."
                self.keys = await api_keys_service.list_api_keys(db, actor=actor)
        except HistoraError as exc:
            self.error = exc.public_message
        except ValueError:
            self.error = "No such key."

    @rx.event
    async def load(self) -> None:
        await self._run("load")

    @rx.event
    async def save_profile(self, form: dict[str, str]) -> None:
        await self._run("profile", form)

    @rx.event
    async def change_password(self, form: dict[str, str]) -> None:
        await self._run("password", form)

    @rx.event
    async def create_key(self, form: dict[str, str]) -> None:
        await self._run("create_key", form)

    @rx.event
    async def revoke_key(self, key_id: str) -> None:
        await self._run("revoke_key", key_id=key_id)

    @rx.event
    async def sign_out_everywhere(self) -> None:
        await self._run("logout_all")


def _section(title: str, *children: rx.Component) -> rx.Component:
    return rx.card(
        rx.vstack(rx.heading(title, size="4"), *children, spacing="3", width="100%"), width="100%"
    )


def _key_row(key: rx.Var[ApiKeyPublic]) -> rx.Component:
    return rx.hstack(
        rx.text(key.name, weight="medium"),
        rx.code(key.prefix, "…"),
        rx.spacer(),
        rx.cond(
            key.revoked_at,
            rx.badge("revoked", color_scheme="gray"),
            rx.button(
                "Revoke",
                size="1",
                color_scheme="red",
                variant="soft",
                on_click=ProfileState.revoke_key(key.id.to(str)),
            ),
        ),
        width="100%",
        align="center",
        data_testid="api-key-row",
    )


def _profile() -> rx.Component:
    user = SessionState.user
    return rx.vstack(
        rx.heading("Your profile", size="7"),
        rx.text(user.email, color=rx.color("gray", 11)),
        rx.cond(
            ProfileState.message != "",
            rx.callout(ProfileState.message, icon="check", color_scheme="green"),
        ),
        rx.cond(
            ProfileState.error != "",
            rx.callout(
                ProfileState.error,
                icon="triangle_alert",
                color_scheme="red",
                data_testid="profile-error",
            ),
        ),
        _section(
            "Name",
            rx.form(
                rx.hstack(
                    rx.input(
                        name="display_name",
                        default_value=user.display_name,
                        max_length=80,
                        required=True,
                        width="100%",
                    ),
                    rx.button("Save", type="submit"),
                    width="100%",
                ),
                on_submit=ProfileState.save_profile,
            ),
        ),
        _section(
            "Password",
            rx.form(
                rx.vstack(
                    rx.input(
                        name="current_password",
                        type="password",
                        placeholder="Current password",
                        required=True,
                        width="100%",
                    ),
                    rx.input(
                        name="new_password",
                        type="password",
                        placeholder="New password (10+ characters)",
                        required=True,
                        width="100%",
                    ),
                    rx.button("Change password", type="submit"),
                    spacing="2",
                    width="100%",
                ),
                on_submit=ProfileState.change_password,
                reset_on_submit=True,
            ),
        ),
        _section(
            "API keys",
            rx.text(
                "Use a key as 'Authorization: Bearer <key>' with the REST API.",
                size="2",
                color=rx.color("gray", 11),
            ),
            rx.cond(
                ProfileState.new_secret != "",
                rx.callout.root(
                    rx.callout.icon(rx.icon("key")),
                    rx.callout.text(
                        "Copy this key now; it is shown only once: ",
                        rx.code(ProfileState.new_secret, data_testid="new-api-key"),
                        rx.icon_button(
                            rx.icon("copy", size=14),
                            size="1",
                            variant="ghost",
                            margin_left="var(--space-2)",
                            aria_label="Copy the key",
                            on_click=[
                                rx.set_clipboard(ProfileState.new_secret),
                                rx.toast.success("Copied", duration=2000),
                            ],
                            data_testid="copy-api-key",
                        ),
                    ),
                ),
            ),
            rx.foreach(ProfileState.keys, _key_row),
            rx.form(
                rx.hstack(
                    rx.input(
                        name="name",
                        placeholder="Key name",
                        max_length=80,
                        required=True,
                        width="100%",
                    ),
                    rx.button("Create key", type="submit"),
                    width="100%",
                ),
                on_submit=ProfileState.create_key,
                reset_on_submit=True,
            ),
        ),
        _section(
            "Sessions",
            rx.hstack(
                rx.button(
                    "Sign out everywhere else",
                    variant="soft",
                    on_click=ProfileState.sign_out_everywhere,
                ),
                rx.button(
                    "Sign out",
                    variant="outline",
                    on_click=SessionState.sign_out,
                    data_testid="sign-out",
                ),
            ),
        ),
        spacing="4",
        width="100%",
        max_width="720px",
    )


@rx.page(
    route="/profile",
    title="Profile · Histora",
    on_load=[SessionState.require_user, ProfileState.load],
)
def profile_page() -> rx.Component:
    return page_layout(rx.cond(SessionState.signed_in, _profile(), loading()))
