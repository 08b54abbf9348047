"""The chat page's markdown is drawn by a React component of its own."""

from __future__ import annotations

import json

from histora.pages.chat.page import _conversation


def test_the_conversation_never_draws_markdown_inline() -> None:
    # react-markdown's component map is built by a function that calls a React hook (the
    # code blocks' colour mode), and Reflex calls it where the markdown is drawn. Drawn
    # inline in the list of replies or behind the draft's condition, the page's
    # component would call that hook a varying number of times per render: React
    # reports "a change in the order of Hooks" and may hand other hooks the wrong state.
    rendered = json.dumps(_conversation().render(), default=str)

    assert "ComponentMap_" not in rendered
    # The saved replies and the draft each draw it as its own component.
    assert rendered.count("SafeMarkdown") == 2
