"""Admin pages: users, characters and their knowledge bases."""

from histora.pages.admin import characters, knowledge_base, users
from histora.pages.admin.users import AdminUsersState

__all__ = ["AdminUsersState", "characters", "knowledge_base", "users"]
