"""State of the chat page: a thin adapter over services.chat and conversations."""

from __future__ import annotations

import asyncio
import functools
import operator
import time
import uuid
from collections.abc import AsyncIterator

import reflex as rx
import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from histora import deps
from histora.errors import HistoraError, NotFoundError
from histora.models import User
from histora.models.characters import CharacterPublic
from histora.models.chat import (
    CUT_SHORT,
    ChatBubble,
    ChatMessagePublic,
    MessageStatus,
    SessionLink,
)
from histora.pages.chat.draft import ChatDraft
from histora.pages.chat.parts import with_piece, without_last
from histora.services import characters as characters_service
from histora.services import chat as chat_service
from histora.services import conversations
from histora.state.address import expect_address_query
from histora.state.naming import short_state_name
from histora.state.session import acting, background_actor

log = structlog.get_logger(__name__)

# DESIGN rule 10: flush the draft in batches, not per token. Each websocket frame
# carries about 90 bytes of envelope, so a flush waits for FLUSH_MIN_CHARS new
# characters (at most one per FLUSH_SECONDS), unless FLUSH_MAX_SECONDS have passed:
# a slow model still streams visibly. The text itself is sent once (see draft.py).
FLUSH_SECONDS = 0.1
FLUSH_MIN_CHARS = 120
FLUSH_MAX_SECONDS = 0.25
# A long reply's flushes space out: after n flushes both limits are (1 + n / 12) times
# larger, the wait at most FLUSH_LONGEST_SECONDS. The draft's 32 chunk vars then hold
# about 18 s or 8,800 characters of reply before they collapse, resending it (draft.py);
# at fixed limits, a fast model's 4,000 characters or a slow one's 8 s filled them.
FLUSH_STRETCH = 12
FLUSH_LONGEST_SECONDS = 0.75
# The conversation: the messages it was opened with, then the ones added while the page
# is open, each in the next of ADDED_LISTS list vars (see parts.py): a turn sends its
# question and its reply once, not the conversation again.
ADDED_LISTS = 32
ADDED_NAMES = tuple(f"a{index}" for index in range(ADDED_LISTS))
# An opened conversation shows its newest messages, at most this many.
MESSAGES_SHOWN = 500
# A reply that another tab or device is receiving is saved whole when it ends: a page
# that opened it unfinished looks again this often, for at most this long (longer than
# a reply takes: a model's total timeout is 2 minutes).
FOLLOW_SECONDS = 1.0
FOLLOW_LIMIT_SECONDS = 300.0


def _should_flush(pending_chars: int, since_flush: float, flushes: int) -> bool:
    """Whether the draft's pending text goes out now, after ``flushes`` flushes."""
    stretch = 1 + flushes / FLUSH_STRETCH
    if since_flush >= min(FLUSH_MAX_SECONDS * stretch, FLUSH_LONGEST_SECONDS):
        return True
    return since_flush >= FLUSH_SECONDS and pending_chars >= FLUSH_MIN_CHARS * stretch


def _route_character_id(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _starter_index(value: str, starters: list[str]) -> int | None:
    if not value.isdecimal() or len(value) > 3:
        return None
    return int(value) if int(value) < len(starters) else None


STATE_NAME = "chat"
# Element ids: the composer (it keeps the focus through a reply) and the end of the conversation
# (scrolled to on a send, so the question and its reply are in view).
COMPOSER_ID = "chat-input"
CONVERSATION_END = "chat-end"

# What a send returns to Reflex: nothing, or the reply's stream to run next.
Followups = rx.event.EventHandler | None


class ChatState(rx.State):
    # Every turn's deltas name this state: a short name saves about 40 bytes a frame.
    get_name = short_state_name(STATE_NAME)

    character: CharacterPublic | None = None
    not_found: bool = False
    sessions: list[SessionLink] = []
    # Conversations that joined the top of the list while the page is open: a new one
    # is sent alone, not with the whole list.
    newer_sessions: list[SessionLink] = []
    session_id: str = ""
    messages: list[ChatBubble] = []
    a0: list[ChatBubble] = []
    a1: list[ChatBubble] = []
    a2: list[ChatBubble] = []
    a3: list[ChatBubble] = []
    a4: list[ChatBubble] = []
    a5: list[ChatBubble] = []
    a6: list[ChatBubble] = []
    a7: list[ChatBubble] = []
    a8: list[ChatBubble] = []
    a9: list[ChatBubble] = []
    a10: list[ChatBubble] = []
    a11: list[ChatBubble] = []
    a12: list[ChatBubble] = []
    a13: list[ChatBubble] = []
    a14: list[ChatBubble] = []
    a15: list[ChatBubble] = []
    a16: list[ChatBubble] = []
    a17: list[ChatBubble] = []
    a18: list[ChatBubble] = []
    a19: list[ChatBubble] = []
    a20: list[ChatBubble] = []
    a21: list[ChatBubble] = []
    a22: list[ChatBubble] = []
    a23: list[ChatBubble] = []
    a24: list[ChatBubble] = []
    a25: list[ChatBubble] = []
    a26: list[ChatBubble] = []
    a27: list[ChatBubble] = []
    a28: list[ChatBubble] = []
    a29: list[ChatBubble] = []
    a30: list[ChatBubble] = []
    a31: list[ChatBubble] = []
    streaming: bool = False
    error: str = ""
    # The open conversation is archived (opened by its link): it is not in the sidebar.
    archived: bool = False
    # A question put in the composer for the user to send (or edit) themselves: a starter
    # question, or a send that was refused, given back. The version remounts the composer.
    prefill: str = ""
    composer_version: int = 0
    # Whether the error is a reply that failed, which Retry writes again. Other errors
    # (a refused send, a reply in progress elsewhere) must not offer to replace the reply.
    can_retry: bool = False
    _turn: chat_service.PreparedTurn | None = None
    _stop_requested: bool = False
    # A reply on screen that is being written elsewhere (see follow_reply): its id and a
    # token new each time the page shows it; and the token a running follower holds.
    _following: str = ""
    _follower: str = ""

    def _assign(self, **values: object) -> None:
        """Set these vars, skipping the ones that already hold the value: Reflex resends
        every var assigned in an event, changed or not, on each reply's frames."""
        for name, value in values.items():
            if getattr(self, name) != value:
                setattr(self, name, value)

    async def _clear_draft(self) -> None:
        (await self.get_state(ChatDraft))._clear()

    def _give_back(self, text: str, *, give_back: bool) -> None:
        """A question that was not sent goes back in the composer, which emptied itself
        on submit. Not a regenerate's (it has no question of its own), nor Continue's
        (the composer was left alone, and may hold a draft of the user's)."""
        if give_back and text.strip():
            self._put_in_composer(text)

    def _put_in_composer(self, text: str) -> None:
        self.prefill = text
        self.composer_version += 1

    def _show(self, messages: list[ChatMessagePublic]) -> None:
        shown = [ChatBubble.of(m) for m in messages]
        # The last message goes in the first added list: a regenerate or retry drops it
        # from there, so the opened history is not resent.
        added = (shown[-1:], *([] for _ in ADDED_NAMES[1:]))
        self._show_conversation((shown[:-1], *added))

    def _conversation(self) -> tuple[list[ChatBubble], ...]:
        """The opened messages, then each added list. The stored values, not the
        attributes: those read back as Reflex's change-tracking proxies, whose items
        would be stored back into the lists as proxies."""
        return tuple(list(self.get_value(name)) for name in ("messages", *ADDED_NAMES))

    def _show_conversation(self, parts: tuple[list[ChatBubble], ...]) -> None:
        # A part that did not change is not assigned, so not resent.
        self._assign(**dict(zip(("messages", *ADDED_NAMES), parts, strict=True)))

    def _append(self, message: ChatMessagePublic) -> None:
        messages, *added = self._conversation()
        self._show_conversation((messages, *with_piece(tuple(added), [ChatBubble.of(message)])))

    def _drop_last(self) -> None:
        self._show_conversation(without_last(self._conversation()))

    async def _refresh_sessions(self) -> None:
        if self.character is None:
            return
        async with acting(self) as (db, actor):
            links = await self._session_titles(db, actor)
        self._show_sessions(links)

    async def _session_titles(self, db: AsyncSession, actor: User) -> list[SessionLink]:
        assert self.character is not None
        return await conversations.list_session_titles(
            db, actor=actor, character_id=self.character.id
        )

    def _listed_sessions(self) -> list[SessionLink]:
        return [*self.get_value("newer_sessions"), *self.get_value("sessions")]

    def _show_sessions(self, links: list[SessionLink]) -> None:
        # Unchanged after most replies (the conversation is already first): then nothing
        # is resent; when conversations only joined the top, only those are (while
        # they are fewer than the rest, else the list is sent whole once more).
        older = self.get_value("sessions")
        joined = len(links) - len(older)
        if 0 <= joined <= len(older) and links[joined:] == older:
            self._assign(newer_sessions=links[:joined])
        else:
            self._assign(sessions=links, newer_sessions=[])

    @rx.event
    async def load(self) -> rx.event.EventSpec | None:
        query = self.router.url.query_parameters
        requested = query.get("session", "")
        if self.streaming and requested and requested == self.session_id:
            return None  # the address caught up with the conversation on screen (its first send)
        await self._detach_reply()
        self._assign(error="", can_retry=False, archived=False)
        self._following = ""
        character_id = _route_character_id(str(self.router.url.path))
        async with deps.db_session() as db:
            found = await characters_service.get_published(db, character_id=character_id)
        self.not_found = found is None
        self.character = (
            CharacterPublic.model_validate(found, from_attributes=True) if found else None
        )
        self.session_id = ""
        self._show([])
        self._assign(prefill="")
        if self.character is None:
            return None
        # The character page's "Ask about" links name one of the figure's own starter
        # questions by its position (never free text); it waits in the composer, so
        # nothing is sent on the user's behalf just by opening a link.
        starter = _starter_index(query.get("starter", ""), self.character.starter_questions)
        if not requested and starter is not None:
            self._put_in_composer(self.character.starter_questions[starter])
        try:
            await self._refresh_sessions()
            if requested:  # a malformed id reads like any conversation not found
                return await self._open(conversations.session_id_from(requested))
        except HistoraError as exc:
            self.error = exc.public_message
        return None

    async def _detach_reply(self) -> None:
        """Stop showing the reply being written: it goes on being saved, off this page."""
        if self.streaming:
            self.streaming, self._turn = False, None
            await self._clear_draft()

    async def _open(self, session_id: uuid.UUID) -> rx.event.EventSpec | None:
        async with acting(self) as (db, actor):
            session = await conversations.get_session(db, actor=actor, session_id=session_id)
            shown = await conversations.latest_messages(
                db, actor=actor, session_id=session_id, limit=MESSAGES_SHOWN
            )
        if self.character is None:
            return None
        if session.character_id != self.character.id:  # a link under another figure
            return rx.redirect(f"/chat/{session.character_id}?session={session.id}")
        self.session_id = str(session.id)
        self._assign(archived=session.archived)
        self._show(shown)
        return self._follow_if_writing(shown)

    def _follow_if_writing(self, shown: list[ChatMessagePublic]) -> rx.event.EventSpec | None:
        if shown and shown[-1].status == MessageStatus.STREAMING:
            self._following = f"{shown[-1].id}/{uuid.uuid4().hex}"
            return ChatState.follow_reply
        self._following = ""
        return None

    @rx.event(background=True)
    async def follow_reply(self) -> None:
        """Show a reply that another tab or device is receiving once it has been saved
        (it is saved whole at its end), for as long as this page shows it."""
        async with self:
            token = self._following
            if not token or self._follower == token:
                return  # nothing to follow, or a follower already does
            self._follower = token
        deadline, held = time.monotonic() + FOLLOW_LIMIT_SECONDS, token
        while token and time.monotonic() < deadline:
            await asyncio.sleep(FOLLOW_SECONDS)
            token = await self._follow_once(token)
            held = token or held
        async with self:
            if token and self._following == token:  # given up
                self._following = ""
            if self._follower == held:
                self._follower = ""

    async def _follow_once(self, token: str) -> str:
        """Look once; the token to go on following ("" when done). The database is read
        outside the page's state lock, so the page's own events do not wait for it."""
        message_id = token.split("/")[0]
        try:
            async with deps.db_session() as db:
                async with self:
                    on_chat_page = str(self.router.url.path).startswith("/chat/")
                    if self._following != token or not self.session_id or not on_chat_page:
                        return ""  # the page moved on
                    session_id = uuid.UUID(self.session_id)
                    actor = await background_actor(self, db)
                newest = await conversations.latest_messages(
                    db, actor=actor, session_id=session_id, limit=1
                )
                writing = MessageStatus.STREAMING
                if any(str(m.id) == message_id and m.status == writing for m in newest):
                    return token
                shown = await conversations.latest_messages(
                    db, actor=actor, session_id=session_id, limit=MESSAGES_SHOWN
                )
        except HistoraError as exc:  # signed out, or the conversation deleted elsewhere
            async with self:
                if self._following == token:
                    self._following, self.error = "", exc.public_message
            return ""
        async with self:
            if self._following != token or self.session_id != str(session_id):
                return ""
            self._show(shown)
            self._assign(error="")
            # Regenerated elsewhere meanwhile: follow the new reply.
            if self._follow_if_writing(shown) is None:
                return ""
            self._follower = self._following
            return self._following

    @rx.event
    async def restore(self) -> None:
        """Take the open conversation out of the archive, back into the sidebar."""
        if not self.session_id:
            return
        try:
            async with acting(self) as (db, actor):
                await conversations.set_archived(
                    db, actor=actor, session_id=uuid.UUID(self.session_id), archived=False
                )
                self._show_sessions(await self._session_titles(db, actor))
        except NotFoundError as exc:  # deleted meanwhile, elsewhere
            self.session_id, self.archived, self._following = "", False, ""
            self._show([])
            self.error = exc.public_message
            return
        except HistoraError as exc:
            self.error = exc.public_message
            return
        self._assign(archived=False, error="")

    @rx.event
    async def new_session(self) -> rx.event.EventSpec | None:
        if self.character is None:
            return None
        await self._detach_reply()
        self.session_id, self.error, self._following = "", "", ""
        self._assign(archived=False)
        self._show([])
        return rx.redirect(f"/chat/{self.character.id}")

    @rx.event
    async def send(self, form: dict[str, str]) -> Followups:
        text = form.get("message", "")
        if not text.strip():
            return None  # Enter on an empty box: nothing to send, and nothing to say
        if self.prefill and not self.streaming:
            # The composer was drawn with a question in it (given back, or a starter's),
            # which its form's reset on this submit put back as its box's size: drawn
            # anew, empty.
            self.composer_version += 1
        return await self._begin(text)

    @rx.event
    async def ask(self, question: str) -> Followups:
        return await self._begin(question)

    async def _begin(
        self, text: str, *, regenerate: bool = False, give_back: bool = True
    ) -> Followups:
        """Start a turn; ``give_back``: a refused ``text`` goes back in the composer."""
        give_back = give_back and not regenerate
        if self.streaming or self.character is None:
            # Guards double submission. A question typed and sent just as a reply began
            # (before the page knew) goes back in the composer.
            self._give_back(text, give_back=give_back)
            return None
        self._assign(error="", prefill="", can_retry=False)
        started = False  # this send starts the conversation
        try:
            async with acting(self) as (db, actor):
                container = deps.get_container()
                await chat_service.check_send_rate(
                    container.rate_limiter, actor=actor, settings=container.settings
                )
                if not self.session_id:
                    if not regenerate:  # a refused first question starts no conversation
                        chat_service.validate_content(text)
                    new = await conversations.create_session(
                        db, actor=actor, character_id=self.character.id
                    )
                    self.session_id, started = str(new.id), True
                    # The page puts it in the address bar (address.py).
                    expect_address_query(self, {"session": self.session_id})
                session_id = uuid.UUID(self.session_id)
                if self._following:  # a reply written elsewhere may be saved by now
                    self._show(
                        await conversations.latest_messages(
                            db, actor=actor, session_id=session_id, limit=MESSAGES_SHOWN
                        )
                    )
                if regenerate:
                    turn = await chat_service.start_regenerate(
                        db, actor=actor, session_id=session_id
                    )
                    self._drop_last()
                else:
                    turn = await chat_service.start_turn(
                        db, actor=actor, session_id=session_id, content=text
                    )
                    self._append(turn.user_message)
                if started:  # listed (and marked as open) from its first question on
                    self._show_sessions(await self._session_titles(db, actor))
        except HistoraError as exc:
            self.error = exc.public_message
            self._give_back(text, give_back=give_back)
            return None
        self._turn, self._stop_requested, self._following = turn, False, ""
        self.streaming = True
        await self._clear_draft()
        return ChatState.stream_reply

    @rx.event
    async def regenerate(self) -> Followups:
        return await self._begin("", regenerate=True)

    @rx.event
    async def continue_reply(self) -> Followups:
        """After a reply cut off at the length limit: ask for the rest, as a user would."""
        return await self._begin(chat_service.CONTINUE_MESSAGE, give_back=False)

    @rx.event
    def stop(self) -> None:
        self._stop_requested = True

    def _is_showing(self, turn: chat_service.PreparedTurn) -> bool:
        """Whether ``turn`` is still the reply on screen (the user may have moved on)."""
        # Not by its reply's id: a regenerate writes the same reply row anew.
        return self._turn is not None and self._turn.turn_id == turn.turn_id

    @rx.event(background=True)
    async def stream_reply(self) -> AsyncIterator[rx.event.EventSpec]:
        async with self:
            turn = self._turn
        if turn is None:
            return
        container = deps.get_container()
        stop = [False]
        stop_read_at = [time.monotonic()]

        async def should_stop() -> bool:
            # Read from the state with each flush below, and here at most every poll
            # interval: before the first words, nothing else reads it.
            now = time.monotonic()
            if not stop[0] and now - stop_read_at[0] >= chat_service.STOP_POLL_SECONDS:
                stop_read_at[0] = now
                try:
                    async with self:
                        # A Stop is for the reply on screen (the page may have moved on).
                        stop[0] = self._is_showing(turn) and self._stop_requested
                except Exception:
                    log.warning("chat.stop_check_failed", exc_info=True)
            return stop[0]

        pending: list[str] = []
        pending_chars, flushes = 0, 0
        last_flush = 0.0  # the first piece of text shows at once
        final: chat_service.ReplyDone | chat_service.ReplyFailed | None = None
        async for event in chat_service.stream_turn(
            container.db_session,
            turn=turn,
            chat_model=container.chat_model,
            retriever=container.retriever,
            should_stop=should_stop,
        ):
            if isinstance(event, chat_service.ReplySources):
                async with self:
                    if self._is_showing(turn):
                        (await self.get_state(ChatDraft))._show_sources(event.citations)
            elif isinstance(event, chat_service.ReplyDelta):
                pending.append(event.text)
                pending_chars += len(event.text)
                if _should_flush(pending_chars, time.monotonic() - last_flush, flushes):
                    async with self:
                        if self._is_showing(turn):
                            (await self.get_state(ChatDraft))._add("".join(pending))
                            stop[0] = self._stop_requested
                            stop_read_at[0] = time.monotonic()
                    pending.clear()
                    pending_chars, flushes = 0, flushes + 1
                    last_flush = time.monotonic()
            else:
                final = event
        earlier_kept = False
        async with self:
            if self._is_showing(turn):
                if final is not None:
                    self._append(final.message)
                    if isinstance(final, chat_service.ReplyFailed):
                        # Not a reply that ran out of time: the same question would too.
                        retry = final.code != chat_service.TIMED_OUT
                        self.error, self.can_retry = final.public_message, retry
                    else:
                        earlier_kept = final.earlier_kept
                await self._clear_draft()
                self.streaming, self._turn = False, None
        async with self:
            await self._refresh_sessions()
        if earlier_kept:  # the bubble that was being written gave way to the earlier one
            yield rx.toast.info("Stopped. The earlier reply is kept.", duration=4000)


# Worked out in the browser from the conversation it holds: as server vars, these two
# went in a turn's frames each time the conversation changed, changed or not.
def conversation_is_empty() -> rx.Var[bool]:
    """No message yet. The added lists fill in order (parts.py), so the conversation is
    empty exactly when the opened messages and the first added list are."""
    return (ChatState.messages.length() == 0) & (ChatState.a0.length() == 0)


def _last_message() -> rx.Var[ChatBubble]:
    parts = (getattr(ChatState, name) for name in ("messages", *ADDED_NAMES))
    conversation: rx.vars.ArrayVar[list[ChatBubble]] = functools.reduce(operator.add, parts)
    # An empty conversation has no last item: its fields are undefined there.
    return conversation[-1]


def can_regenerate() -> rx.Var[bool]:
    """No reply is being written, and the last message is a reply."""
    last_is_reply = _last_message().role == "assistant"  # type: ignore[attr-defined]
    return ~ChatState.streaming & last_is_reply


def can_continue() -> rx.Var[bool]:
    """No reply is being written, and the last message is a reply cut off at the length
    limit (only replies are)."""
    return ~ChatState.streaming & (_last_message().status == CUT_SHORT)  # type: ignore[attr-defined]
