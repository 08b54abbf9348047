"""Where the sign-in page sends people afterwards: never to another site."""

from __future__ import annotations

import pytest

from histora.pages.auth import _next_path


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
