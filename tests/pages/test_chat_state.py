"""The chat page's message lists: what a turn resends, and that nothing is lost or reordered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from histora.models import MessageRole, MessageStatus
from histora.models.chat import ChatBubble, ChatMessagePublic, SessionLink
from histora.pages.chat.state import MESSAGES_MERGE_MIN, ChatState, _starter_index
from tests.support import reflex_root, substate

SESSION = uuid.uuid4()


def _chat_state() -> ChatState:
    return substate(reflex_root(), ChatState)


def _message(n: int) -> ChatMessagePublic:
    return ChatMessagePublic(
        id=uuid.uuid4(),
        session_id=SESSION,
        role=MessageRole.USER if n % 2 == 0 else MessageRole.ASSISTANT,
        content=f"message {n}",
        status=MessageStatus.COMPLETE,
        model=None,
        prompt_tokens=0,
        completion_tokens=0,
        credits_charged=0,
        error=None,
        client_message_id=None,
        citations=[],
        created_at=datetime.now(UTC),
    )


def _shown(state: ChatState) -> list[str]:
    return [m.content for m in [*state.messages, *state.middle, *state.recent]]


def test_new_messages_go_to_short_lists_and_keep_their_order() -> None:
    state = _chat_state()
    history = [_message(n) for n in range(300)]
    state._show(history)
    assert state.recent == state.middle == [] and not state.is_empty

    resent = 0
    for n in range(300, 400):
        state.dirty_vars.clear()
        state._append(_message(n))
        # Reflex resends each list that was assigned, whole.
        lists = state.dirty_vars & {"messages", "middle", "recent"}
        resent += sum(len(getattr(state, name)) for name in lists)
        assert len(state.recent) < max(MESSAGES_MERGE_MIN[1], len(state.middle) // 2)
        assert len(state.middle) < max(MESSAGES_MERGE_MIN[0], len(state.messages) // 2)

    assert _shown(state) == [f"message {n}" for n in range(400)]
    # 100 turns' messages on a page that opened with 300: with one short list moved
    # into the whole conversation every 8 messages, about 4,600 were resent.
    assert resent < 1_500, resent
    # The lists hold the bubbles themselves, never Reflex's change-tracking proxies.
    stored = [*state.get_value("messages"), *state.get_value("middle"), *state.get_value("recent")]
    assert all(type(bubble) is ChatBubble for bubble in stored)


def test_regenerate_drops_the_last_reply_wherever_it_is() -> None:
    state = _chat_state()
    state._show([_message(0), _message(1)])
    assert state.can_regenerate
    state._drop_last()  # from the loaded history
    assert _shown(state) == ["message 0"] and not state.can_regenerate

    state._append(_message(1))
    assert state.can_regenerate
    state._drop_last()  # from the messages added on this page
    assert _shown(state) == ["message 0"] and state.recent == []


def test_an_empty_conversation_shows_the_starters() -> None:
    state = _chat_state()
    state._show([])
    assert state.is_empty and not state.can_regenerate
    state._append(_message(0))
    assert not state.is_empty


def test_only_a_starter_position_the_figure_has_fills_the_composer() -> None:
    starters = ["What is justice?", "What is virtue?", "Why question?"]
    assert _starter_index("0", starters) == 0
    assert _starter_index("2", starters) == 2
    for value in ("3", "-1", "", "1e1", " 1", "٣", "9" * 5000):
        assert _starter_index(value, starters) is None, value


def test_conversations_joining_the_top_of_the_list_are_sent_alone() -> None:
    state = _chat_state()
    listed = [SessionLink(id=str(n), title=f"conversation {n}") for n in range(50)]
    state._show_sessions(listed)
    assert state._listed_sessions() == listed

    state.dirty_vars.clear()
    started = SessionLink(id="new", title="What is justice?")
    state._show_sessions([started, *listed])
    assert state.dirty_vars == {"newer_sessions"} and state.newer_sessions == [started]
    assert state._listed_sessions() == [started, *listed]

    state.dirty_vars.clear()
    state._show_sessions([started, *listed])  # nothing changed: nothing to send
    assert state.dirty_vars == set()

    # An older conversation moving to the top reorders the list: it is sent whole.
    reordered = [listed[7], started, *listed[:7], *listed[8:]]
    state._show_sessions(reordered)
    assert state._listed_sessions() == reordered and state.newer_sessions == []
