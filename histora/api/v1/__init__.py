"""Version 1 of the REST API: one router module per resource."""

from fastapi import APIRouter

from histora.api.v1 import api_keys, auth, characters, chat, documents, health, search

router = APIRouter()
router.include_router(health.router)
router.include_router(auth.router)
router.include_router(api_keys.router)
router.include_router(characters.router)
router.include_router(chat.router)
router.include_router(documents.router)
router.include_router(search.router)
