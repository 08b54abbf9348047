"""Session management on the chat page: rename, archive and delete (confirmed)."""

from __future__ import annotations

import reflex as rx
from reflex_components_sonner.toast import ToastAction

from histora import deps
from histora.errors import HistoraError, InvalidInputError
from histora.pages.chat.state import ChatState
from histora.services import conversations
from histora.services import documents as documents_service
from histora.state.session import acting

UNDO_SECONDS = 8  # how long "Archived" offers its Undo


class ChatSessionsState(rx.State):
    confirm_delete_id: str = ""
    confirm_delete_title: str = ""
    rename_id: str = ""
    rename_title: str = ""
    rename_error: str = ""

    @rx.event
    def ask_rename(self, session_id: str, title: str) -> None:
        self.rename_id, self.rename_title, self.rename_error = session_id, title, ""

    @rx.event
    def cancel_rename(self) -> None:
        self.rename_id, self.rename_error = "", ""

    @rx.event
    def rename_open_changed(self, is_open: bool) -> None:
        if not is_open:
            self.cancel_rename()

    @rx.event
    async def confirm_rename(self, form: dict[str, str]) -> None:
        chat = await self.get_state(ChatState)
        try:
            target = conversations.session_id_from(self.rename_id)
            async with acting(self) as (db, actor):
                await conversations.rename_session(
                    db, actor=actor, session_id=target, title=form.get("title", "")
                )
        except InvalidInputError as exc:  # the dialog stays open to fix the title
            self.rename_error = exc.public_message
            return
        except HistoraError as exc:
            self.rename_id = ""
            chat.error = exc.public_message
            return
        self.rename_id, self.rename_error = "", ""
        await chat._refresh_sessions()

    @rx.event
    async def ask_delete(self, session_id: str) -> None:
        chat = await self.get_state(ChatState)
        listed = {link.id: link.title for link in chat._listed_sessions()}
        # The dialog names the conversation: its menu need not be the open one's.
        self.confirm_delete_id = session_id
        self.confirm_delete_title = listed.get(session_id, "")

    @rx.event
    def cancel_delete(self) -> None:
        self.confirm_delete_id = ""

    @rx.event
    def delete_open_changed(self, is_open: bool) -> None:
        if not is_open:
            self.cancel_delete()

    async def _apply(
        self, session_id: str, *, delete: bool
    ) -> tuple[bool, rx.event.EventSpec | None]:
        """Delete or archive; whether it was done, and what the page does next."""
        chat = await self.get_state(ChatState)
        if chat.streaming and chat.session_id == session_id:
            # Its reply is still being saved; another conversation may go meanwhile.
            action = "deleting" if delete else "archiving"
            chat.error = f"Stop the reply, or let it finish, before {action} this conversation."
            return False, None
        try:
            target = conversations.session_id_from(session_id)
            async with acting(self) as (db, actor):
                if delete:  # its uploaded documents, their files and vectors go too
                    container = deps.get_container()
                    await documents_service.delete_session_and_documents(
                        db,
                        actor=actor,
                        session_id=target,
                        files=container.file_store,
                        vector_store=container.vector_store,
                    )
                else:
                    await conversations.set_archived(
                        db, actor=actor, session_id=target, archived=True
                    )
        except HistoraError as exc:
            chat.error = exc.public_message
            return False, None
        if chat.session_id == session_id:
            return True, ChatState.new_session
        await chat._refresh_sessions()
        return True, None

    @rx.event
    async def confirm_delete(self) -> rx.event.EventSpec | None:
        session_id, self.confirm_delete_id = self.confirm_delete_id, ""
        return (await self._apply(session_id, delete=True))[1]

    @rx.event
    async def archive(self, session_id: str) -> list[rx.event.EventSpec] | None:
        was_open = (await self.get_state(ChatState)).session_id == session_id
        archived, then = await self._apply(session_id, delete=False)
        if not archived:
            return None
        undo = ToastAction(
            label="Undo", on_click=ChatSessionsState.undo_archive(session_id, was_open)
        )
        notice = rx.toast.info("Conversation archived.", action=undo, duration=UNDO_SECONDS * 1000)
        return [notice] if then is None else [then, notice]

    @rx.event
    async def undo_archive(self, session_id: str, reopen: bool) -> rx.event.EventSpec | None:
        """Back into the list; and back on screen when it was open and the page still
        shows the empty conversation that took its place."""
        chat = await self.get_state(ChatState)
        try:
            target = conversations.session_id_from(session_id)
            async with acting(self) as (db, actor):
                restored = await conversations.set_archived(
                    db, actor=actor, session_id=target, archived=False
                )
        except HistoraError as exc:
            chat.error = exc.public_message
            return None
        showing_figure = chat.character is not None and chat.character.id == restored.character_id
        if reopen and showing_figure and not chat.session_id:
            return rx.redirect(f"/chat/{restored.character_id}?session={restored.id}")
        await chat._refresh_sessions()
        return None
