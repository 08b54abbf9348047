"""The chat page's message lists: what a turn resends, and that nothing is lost or reordered."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import reflex as rx
import reflex_base
from reflex.utils import format

from histora.models import MessageRole, MessageStatus
from histora.models.chat import ChatBubble, ChatMessagePublic, SessionLink
from histora.pages.chat.draft import CHUNKS
from histora.pages.chat.state import (
    ADDED_NAMES,
    FLUSH_MIN_CHARS,
    STATE_NAME,
    ChatState,
    _should_flush,
    _starter_index,
    can_continue,
    can_regenerate,
    conversation_is_empty,
)
from tests.support import reflex_root, run_in_node, substate

SESSION = uuid.uuid4()


def _chat_state() -> ChatState:
    return substate(reflex_root(), ChatState)


def _message(n: int, *, cut_short: bool = False) -> ChatMessagePublic:
    return ChatMessagePublic(
        id=uuid.uuid4(),
        session_id=SESSION,
        role=MessageRole.USER if n % 2 == 0 else MessageRole.ASSISTANT,
        content=f"message {n}",
        status=MessageStatus.COMPLETE,
        cut_short=cut_short,
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
    return [m.content for part in state._conversation() for m in part]


def _reflex_helpers() -> str:
    """Reflex's own frontend helpers for `and` (``isTrue``, ``pyAnd``), read from the
    template its pages are built with, so the expressions run as they do in a page."""
    template = Path(reflex_base.__file__).parent / ".templates/web/utils/state.js"
    lines = template.read_text().splitlines()
    helpers = []
    for name in ("isTrue", "pyAnd"):
        start = next(i for i, line in enumerate(lines) if line.startswith(f"export const {name} ="))
        # A one-line arrow function, or a block that ends with a line of its own.
        end = start if lines[start].endswith(");") else lines.index("};", start)
        helpers.append("\n".join(lines[start : end + 1]).removeprefix("export "))
    return "\n".join(helpers)


def _held(state: ChatState) -> dict[str, object]:
    """What the browser holds of ``state`` for the expressions below, as Reflex sends it."""
    names = ("messages", *ADDED_NAMES)
    held: dict[str, object] = {f"{name}_rx_state_": state.get_value(name) for name in names}
    held["streaming_rx_state_"] = state.streaming
    return json.loads(json.dumps(held, default=lambda bubble: bubble.model_dump(mode="json")))


def _in_browser(held: list[dict[str, object]], *expressions: rx.Var[bool]) -> list[list[object]]:
    """What the page's browser-side ``expressions`` give for each of ``held``, run in
    Node (one run for all)."""
    variable = format.format_state_name(ChatState.get_full_name())
    script = (
        f"{_reflex_helpers()}\nconst held = {json.dumps(held)};\n"
        f"const values = held.map(({variable}) => [{', '.join(str(e) for e in expressions)}]);\n"
        "console.log(JSON.stringify(values));"
    )
    return list(run_in_node(script))


def _is_empty(state: ChatState) -> object:
    return _in_browser([_held(state)], conversation_is_empty())[0][0]


def _can_regenerate(state: ChatState) -> object:
    return _in_browser([_held(state)], can_regenerate())[0][0]


def _sent_per_append(state: ChatState, messages: list[ChatMessagePublic]) -> list[int]:
    """How many messages Reflex would send for each append (it sends changed lists whole)."""
    sent = []
    for message in messages:
        state.dirty_vars.clear()
        state._append(message)
        lists = state.dirty_vars & {"messages", *ADDED_NAMES}
        sent.append(sum(len(state.get_value(name)) for name in lists))
    return sent


def test_each_message_added_on_the_page_is_sent_once() -> None:
    state = _chat_state()
    state._show([_message(n) for n in range(300)])
    assert _is_empty(state) is False and not any(state._conversation()[2:])

    # 15 turns: each question and each reply is sent alone, the history never again.
    assert _sent_per_append(state, [_message(n) for n in range(300, 330)]) == [1] * 30
    assert _shown(state) == [f"message {n}" for n in range(330)]
    # The lists hold the bubbles themselves, never Reflex's change-tracking proxies.
    stored = [bubble for part in state._conversation() for bubble in part]
    assert all(type(bubble) is ChatBubble for bubble in stored)


def test_a_long_visit_keeps_every_message_in_order_and_resends_little() -> None:
    state = _chat_state()
    state._show([_message(n) for n in range(300)])
    sent = _sent_per_append(state, [_message(n) for n in range(300, 500)])
    assert _shown(state) == [f"message {n}" for n in range(500)]
    # 100 turns: the 32 lists collapse six times, so 200 messages cost 857 sent (three
    # lists merged at 4 and 16 messages cost 4,301; one list resent whole, 80,100).
    assert sum(sent) < 900, sum(sent)
    assert "messages" not in state.dirty_vars


def test_regenerate_drops_the_last_reply_wherever_it_is() -> None:
    state = _chat_state()
    state._show([_message(n) for n in range(300)])
    state.dirty_vars.clear()
    state._drop_last()  # the last loaded reply: the opened history is not resent
    assert "messages" not in state.dirty_vars
    assert _shown(state) == [f"message {n}" for n in range(299)]

    state._show([_message(0), _message(1)])
    assert _can_regenerate(state) is True
    state._drop_last()
    assert _shown(state) == ["message 0"] and _can_regenerate(state) is False

    state._append(_message(1))
    assert _can_regenerate(state) is True
    state.streaming = True  # no Regenerate while a reply is being written
    assert _can_regenerate(state) is False
    state.streaming = False
    state._drop_last()  # from the messages added on this page
    assert _shown(state) == ["message 0"] and not any(state._conversation()[1:])
    state._append(_message(1))  # the next reply takes the list that was emptied
    assert state.get_value("a0") and _shown(state) == ["message 0", "message 1"]


def test_continue_is_offered_only_after_a_last_reply_cut_off_at_the_length_limit() -> None:
    state = _chat_state()
    state._show([])
    steps, expected = [_held(state)], [False]  # nothing to continue
    state._append(_message(0))
    state._append(_message(1, cut_short=True))
    steps.append(_held(state))
    expected.append(True)
    state.streaming = True  # not while a reply is being written
    steps.append(_held(state))
    expected.append(False)
    state.streaming = False
    state._append(_message(2))  # the user's next question
    steps.append(_held(state))
    expected.append(False)
    state._append(_message(3))  # its reply ended where the model meant it to
    steps.append(_held(state))
    expected.append(False)
    state._show([_message(0), _message(1, cut_short=True)])  # opened from the database
    steps.append(_held(state))
    expected.append(True)
    assert [values[0] for values in _in_browser(steps, can_continue())] == expected


def test_an_empty_conversation_shows_the_starters() -> None:
    state = _chat_state()
    state._show([])
    steps, expected = [_held(state)], [[True, False]]
    state._append(_message(0))
    steps.append(_held(state))
    expected.append([False, False])
    state._drop_last()
    steps.append(_held(state))
    expected.append([True, False])
    # Past two collapses of the added lists: a question, then its reply, at each step.
    for n in range(80):
        state._append(_message(n))
        steps.append(_held(state))
        expected.append([False, n % 2 == 1])
    for n in range(79, -1, -1):
        state._drop_last()
        steps.append(_held(state))
        expected.append([n == 0, n % 2 == 0 and n > 0])
    assert not any(state._conversation())
    assert _in_browser(steps, conversation_is_empty(), can_regenerate()) == expected


def test_a_turn_sends_the_list_it_fills_and_nothing_worked_out_from_it() -> None:
    """Whether the conversation is empty, and whether its last reply can be written
    again, are worked out in the browser: a turn does not send them."""
    state = _chat_state()
    state._show([_message(0), _message(1)])
    state.get_delta()
    state._clean()
    state._append(_message(2))
    assert set(state.get_delta()[ChatState.get_full_name()]) == {"a1_rx_state_"}


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


def test_the_state_has_a_short_name_for_its_deltas() -> None:
    full_name = f"reflex___state____state.{STATE_NAME}"
    assert ChatState.get_full_name() == full_name
    # The page's events are addressed by that name too.
    assert format.format_event_handler(ChatState.send) == f"{full_name}.send"


def _flushes(*, chars_per_token: int, token_seconds: float, seconds: float) -> list[int]:
    """The characters of each flush for a model streaming at this pace."""
    sizes: list[int] = []
    pending, last_flush = 0, -1e9
    for step in range(1, int(seconds / token_seconds) + 1):
        now = step * token_seconds
        pending += chars_per_token
        if _should_flush(pending, now - last_flush, len(sizes)):
            sizes.append(pending)
            pending, last_flush = 0, now
    return sizes


def test_a_reply_starts_at_once_in_small_flushes_and_a_long_one_fits_the_chunks() -> None:
    fast = _flushes(chars_per_token=5, token_seconds=0.01, seconds=17)  # 8,500 characters
    slow = _flushes(chars_per_token=4, token_seconds=0.1, seconds=17)  # 40 characters a second
    for sizes in (fast, slow):
        assert len(sizes) <= CHUNKS, len(sizes)
    # The first text shows at once, and the next few flushes are about as small as at
    # fixed limits (120 characters, or 0.25 s: 10 characters of the slow model).
    assert fast[0] == 5 and slow[0] == 4
    assert max(fast[1:4]) <= 1.3 * FLUSH_MIN_CHARS and max(slow[1:4]) <= 16
    # A model that keeps going for a minute still gets a flush at least every 0.75 s.
    minute = _flushes(chars_per_token=4, token_seconds=0.05, seconds=60)
    assert len(minute) >= 60 / 0.75
