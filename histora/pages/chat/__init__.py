"""The chat page: /chat/[character_id] (a session by URL with ?session=<id>)."""

from histora.pages.chat.page import chat_page

__all__ = ["chat_page"]
