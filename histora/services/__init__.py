"""All business logic. Never imports reflex or fastapi."""
