"""Renaming and archiving conversations from the pages: bad input gets a message, the
database keeps what it had."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import reflex as rx
from reflex.istate.data import ReflexURL, RouterData
from sqlmodel.ext.asyncio.session import AsyncSession

from histora.models import ChatMessage, ChatSession, User
from histora.models.base import utcnow
from histora.models.characters import CharacterPublic
from histora.models.chat import ChatSessionPublic
from histora.pages import conversations as conversations_page
from histora.pages.chat import state as chat_state
from histora.pages.chat.sessions_state import ChatSessionsState
from histora.pages.chat.state import ChatState
from histora.pages.conversations import ConversationsState
from histora.services import characters as characters_service
from histora.services import chat as chat_service
from histora.services import conversations
from tests.conftest import FakeProvidersContainer
from tests.factories import make_user
from tests.support import (
    chat_page_router_data,
    event_context,
    on_page,
    signed_in_root,
    substate,
)


async def _socrates(db: AsyncSession) -> CharacterPublic:
    found = await characters_service.get_published(db, character_id="socrates")
    assert found is not None
    return CharacterPublic.model_validate(found, from_attributes=True)


async def _chat_with_socrates(db: AsyncSession, root: rx.State) -> ChatState:
    chat = substate(root, ChatState)
    chat.character = await _socrates(db)
    return chat


async def _stored(db: AsyncSession, session_id: object) -> ChatSession:
    db.expunge_all()
    row = await db.get(ChatSession, session_id)
    assert row is not None
    return row


async def _stored_title(db: AsyncSession, session_id: object) -> str:
    return (await _stored(db, session_id)).title


async def _one_conversation(
    db: AsyncSession, container: FakeProvidersContainer
) -> tuple[User, ChatSessionPublic, rx.State]:
    """A new user with one conversation with Socrates, signed in to a fresh state tree."""
    user = await make_user(db)
    session = await conversations.create_session(db, actor=user, character_id="socrates")
    return user, session, await signed_in_root(db, user, container.settings)


async def test_a_blank_title_keeps_the_rename_dialog_open(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    _, session, root = await _one_conversation(db, container)
    state = substate(root, ChatSessionsState)

    ChatSessionsState.ask_rename.fn(state, str(session.id), session.title)
    await ChatSessionsState.confirm_rename.fn(state, {"title": "   "})
    assert state.rename_error == "A title cannot be empty."
    assert state.rename_id == str(session.id)  # still open, to fix the title
    assert await _stored_title(db, session.id) == session.title

    await ChatSessionsState.confirm_rename.fn(state, {"title": "  On   virtue "})
    assert state.rename_id == "" and state.rename_error == ""
    assert await _stored_title(db, session.id) == "On virtue"


async def test_renaming_a_malformed_id_says_not_found(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    root = await signed_in_root(db, await make_user(db), container.settings)
    state = substate(root, ChatSessionsState)
    ChatSessionsState.ask_rename.fn(state, "not-a-uuid", "x")
    await ChatSessionsState.confirm_rename.fn(state, {"title": "New"})
    assert substate(root, ChatState).error == "No such conversation."
    assert state.rename_id == ""


async def test_conversations_page_lists_every_figure_and_restores_archived(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    with_socrates = await conversations.create_session(db, actor=user, character_id="socrates")
    await conversations.create_session(db, actor=user, character_id="marie-curie")
    await conversations.create_session(db, actor=await make_user(db), character_id="socrates")
    root = await signed_in_root(db, user, container.settings)
    state = substate(root, ConversationsState)

    await ConversationsState.load.fn(state)
    assert sorted(s.character_id for s in state.sessions) == ["marie-curie", "socrates"]

    await ConversationsState.set_archived.fn(state, str(with_socrates.id), True)
    assert [s.character_id for s in state.sessions] == ["marie-curie"]
    await ConversationsState.toggle_archived.fn(state, True)
    assert {s.character_id: s.archived for s in state.sessions} == {
        "marie-curie": False,
        "socrates": True,
    }
    await ConversationsState.set_archived.fn(state, str(with_socrates.id), False)
    assert not any(s.archived for s in state.sessions) and state.error == ""

    await ConversationsState.set_archived.fn(state, "not-a-uuid", True)
    assert state.error == "No such conversation."
    assert len(state.sessions) == 2  # the list is left as it was


async def test_the_chat_page_list_is_not_resent_when_a_reply_leaves_it_unchanged(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    older = await conversations.create_session(db, actor=user, character_id="socrates")
    newer = await conversations.create_session(db, actor=user, character_id="socrates")
    await conversations.create_session(db, actor=user, character_id="marie-curie")
    root = await signed_in_root(db, user, container.settings)
    chat = await _chat_with_socrates(db, root)

    async def exchange(question: str) -> None:
        turn = await chat_service.start_turn(db, actor=user, session_id=newer.id, content=question)
        async for _ in chat_service.stream_turn(
            container.db_session, turn=turn, chat_model=container.chat_model
        ):
            pass

    await exchange("On courage")

    await chat._refresh_sessions()
    assert [(s.id, s.title) for s in chat._listed_sessions()] == [
        (str(newer.id), "On courage"),
        (str(older.id), older.title),
    ]
    assert {"sessions", "newer_sessions"} & chat.dirty_vars

    chat.dirty_vars.clear()
    # Another turn in the conversation already first: its title and place are kept.
    await exchange("And then?")
    await chat._refresh_sessions()
    assert not {"sessions", "newer_sessions"} & chat.dirty_vars

    await conversations.rename_session(db, actor=user, session_id=older.id, title="On piety")
    await chat._refresh_sessions()
    assert "sessions" in chat.dirty_vars
    # the order is kept
    assert [s.title for s in chat._listed_sessions()] == ["On courage", "On piety"]


async def test_conversations_page_says_how_many_it_does_not_list(
    db: AsyncSession, container: FakeProvidersContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conversations_page, "PAGE_SIZE", 2)
    user = await make_user(db)
    for _ in range(3):
        await conversations.create_session(db, actor=user, character_id="socrates")
    root = await signed_in_root(db, user, container.settings)
    state = substate(root, ConversationsState)

    await ConversationsState.load.fn(state)
    assert (len(state.sessions), state.total, state.not_shown) == (2, 3, 1)


async def test_a_refused_first_question_starts_no_conversation_and_is_given_back(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user = await make_user(db)
    root = await signed_in_root(db, user, container.settings)
    chat = await _chat_with_socrates(db, root)
    too_long = "Why? " * 1000

    await chat._begin(too_long)
    assert chat.error == "A message is limited to 4,000 characters; this one has 4,999."
    assert (chat.prefill, chat.can_retry, chat.session_id) == (too_long, False, "")
    assert await conversations.list_session_titles(db, actor=user, character_id="socrates") == []


async def test_the_first_question_starts_a_conversation_whose_address_the_state_expects(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    """The page puts the new conversation in the address bar itself; the state takes
    the address on now, so the next question (which brings it) is no navigation."""
    user = await make_user(db)
    root = await signed_in_root(db, user, container.settings)
    chat = await _chat_with_socrates(db, root)
    page = chat_page_router_data("/chat/socrates?starter=0", {"starter": "0"})
    on_page(root, page)
    event = event_context(page)

    with event:
        await chat._begin("What is courage?")
    assert chat.session_id and chat.streaming
    expected = {"session": chat.session_id}
    assert dict(chat.router.url.query_parameters) == expected
    assert event.router_data["query"] == {**expected, "character_id": "socrates"}
    assert not any(name.startswith("rx_router_") for name in root.dirty_vars)


async def test_during_a_reply_its_conversation_stays_and_the_others_can_go(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user, writing, root = await _one_conversation(db, container)
    other = await conversations.create_session(db, actor=user, character_id="socrates")
    chat = await _chat_with_socrates(db, root)
    chat.session_id, chat.streaming = str(writing.id), True
    state = substate(root, ChatSessionsState)

    await ChatSessionsState.archive.fn(state, str(writing.id))
    assert chat.error == "Stop the reply, or let it finish, before archiving this conversation."
    assert not (await _stored(db, writing.id)).archived

    chat.error = ""
    await ChatSessionsState.archive.fn(state, str(other.id))
    assert chat.error == ""
    assert (await _stored(db, other.id)).archived
    assert chat.streaming  # the reply on screen goes on


async def test_a_new_conversation_during_a_reply_leaves_the_reply_to_be_saved(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user, session, root = await _one_conversation(db, container)
    chat = await _chat_with_socrates(db, root)
    turn = await chat_service.start_turn(db, actor=user, session_id=session.id, content="Why?")
    chat.session_id, chat.streaming, chat._turn = str(session.id), True, turn

    redirect = await ChatState.new_session.fn(chat)
    assert redirect is not None and "/chat/socrates" in str(redirect)
    # No longer shown here, so the streaming task stops updating this page (and saves on).
    assert (chat.streaming, chat._turn, chat.session_id) == (False, None, "")
    assert not chat._is_showing(turn)


async def test_an_archived_conversation_is_restored_and_one_deleted_meanwhile_is_let_go(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user, session, root = await _one_conversation(db, container)
    await conversations.set_archived(db, actor=user, session_id=session.id, archived=True)
    chat = await _chat_with_socrates(db, root)

    await chat._open(session.id)
    assert chat.archived and chat.session_id == str(session.id)
    await ChatState.restore.fn(chat)
    assert not chat.archived and chat.error == ""
    assert not (await _stored(db, session.id)).archived
    assert [link.id for link in chat._listed_sessions()] == [str(session.id)]

    await conversations.set_archived(db, actor=user, session_id=session.id, archived=True)
    await chat._open(session.id)
    await conversations.delete_session(db, actor=user, session_id=session.id)
    await ChatState.restore.fn(chat)
    assert chat.error == "No such conversation."
    assert (chat.archived, chat.session_id) == (False, "")


def _on_the_chat_page(root: rx.State) -> None:
    root.router = RouterData(url=ReflexURL("http://localhost:3000/chat/socrates"))


async def test_a_reply_written_for_another_tab_shows_once_it_is_saved(
    db: AsyncSession, container: FakeProvidersContainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_state, "FOLLOW_SECONDS", 0)
    user, session, root = await _one_conversation(db, container)
    _on_the_chat_page(root)
    # Another tab asked; its reply is being written.
    turn = await chat_service.start_turn(db, actor=user, session_id=session.id, content="Why?")
    chat = await _chat_with_socrates(db, root)

    assert await chat._open(session.id) == ChatState.follow_reply
    token = chat._following
    assert chat._conversation()[1][-1].status == "streaming"
    assert await chat._follow_once(token) == token  # still being written: nothing changes
    assert chat._conversation()[1][-1].content == ""

    # Opened again meanwhile: a new token, and the follower of the old one stops.
    await chat._open(session.id)
    assert chat._following != token
    assert await chat._follow_once(token) == ""

    async for _ in chat_service.stream_turn(
        container.db_session, turn=turn, chat_model=container.chat_model
    ):
        pass
    # A follower already running for the new token is not doubled.
    chat._follower = chat._following
    await ChatState.follow_reply.fn(chat)
    assert chat._conversation()[1][-1].status == "streaming"

    chat._follower = ""
    await ChatState.follow_reply.fn(chat)
    shown = chat._conversation()[1][-1]
    assert (shown.status, shown.content) == ("complete", "Hello from the fake model.")
    assert (chat._following, chat._follower) == ("", "")


async def test_a_followed_reply_stops_being_followed_when_the_page_moves_on(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user, session, root = await _one_conversation(db, container)
    _on_the_chat_page(root)
    turn = await chat_service.start_turn(db, actor=user, session_id=session.id, content="Why?")
    chat = await _chat_with_socrates(db, root)

    await chat._open(session.id)
    token = chat._following
    await ChatState.new_session.fn(chat)
    assert await chat._follow_once(token) == ""

    await chat._open(session.id)
    root.router = RouterData(url=ReflexURL("http://localhost:3000/conversations"))
    assert await chat._follow_once(chat._following) == ""

    _on_the_chat_page(root)
    await chat._open(session.id)
    # Gone meanwhile: its reply was left streaming by a process that died, long ago.
    reply = await db.get(ChatMessage, turn.assistant_message_id)
    assert reply is not None
    reply.updated_at = utcnow() - timedelta(seconds=conversations.STALE_REPLY_SECONDS + 1)
    db.add(reply)
    await conversations.delete_session(db, actor=user, session_id=session.id)
    assert await chat._follow_once(chat._following) == ""
    assert chat.error == "No such conversation." and chat._following == ""


async def test_a_send_from_a_page_following_a_reply_shows_that_reply_as_saved(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    user, session, root = await _one_conversation(db, container)
    _on_the_chat_page(root)
    turn = await chat_service.start_turn(db, actor=user, session_id=session.id, content="Why?")
    chat = await _chat_with_socrates(db, root)
    await chat._open(session.id)
    async for _ in chat_service.stream_turn(
        container.db_session, turn=turn, chat_model=container.chat_model
    ):
        pass

    await ChatState.send.fn(chat, {"message": "And then?"})
    shown = [bubble for part in chat._conversation() for bubble in part]
    assert [(b.role, b.status, b.content) for b in shown] == [
        ("user", "complete", "Why?"),
        ("assistant", "complete", "Hello from the fake model."),
        ("user", "complete", "And then?"),
    ]
    assert chat._following == ""


async def test_a_question_sent_as_a_reply_begins_goes_back_in_the_composer(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    # Enter pressed before the page knew a reply had begun: the form has emptied itself.
    user, session, root = await _one_conversation(db, container)
    chat = await _chat_with_socrates(db, root)
    chat.session_id, chat.streaming = str(session.id), True
    version = chat.composer_version

    assert await ChatState.send.fn(chat, {"message": "And then?"}) is None
    assert (chat.prefill, chat.composer_version) == ("And then?", version + 1)
    assert not any(chat._conversation())  # nothing sent
    assert await conversations.latest_messages(db, actor=user, session_id=session.id, limit=5) == []


async def test_an_empty_send_does_nothing_and_says_nothing(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    root = await signed_in_root(db, await make_user(db), container.settings)
    chat = await _chat_with_socrates(db, root)
    chat.error = "An earlier problem."

    assert await ChatState.send.fn(chat, {"message": "  \n "}) is None
    # No conversation started, no error shown over the one already there.
    assert chat.session_id == "" and chat.error == "An earlier problem."
    assert not any(chat._conversation())


async def test_continue_asks_for_the_rest_and_never_touches_the_composer(
    db: AsyncSession, container: FakeProvidersContainer
) -> None:
    # The composer is redrawn (with ``prefill`` in it) only when its version changes:
    # Continue, unlike Send, must never redraw it over what the user is typing.
    user, session, root = await _one_conversation(db, container)
    chat = await _chat_with_socrates(db, root)
    chat.session_id = str(session.id)
    version = chat.composer_version

    chat.streaming = True  # a second click, before the page knew the first one began
    assert await ChatState.continue_reply.fn(chat) is None
    chat.streaming = False
    chat.session_id = str(uuid.uuid4())  # refused: deleted meanwhile, elsewhere
    assert await ChatState.continue_reply.fn(chat) is None
    assert chat.error == conversations.SESSION_NOT_FOUND
    assert chat.composer_version == version and chat.prefill == ""

    chat.session_id, chat.error = str(session.id), ""
    assert await ChatState.continue_reply.fn(chat) == ChatState.stream_reply
    sent = await conversations.latest_messages(db, actor=user, session_id=session.id, limit=5)
    assert [m.content for m in sent] == [chat_service.CONTINUE_MESSAGE, ""]
    assert chat.composer_version == version
