"""The REST API (FastAPI), mounted into Reflex's backend with ``api_transformer``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from starlette.middleware.trustedhost import TrustedHostMiddleware

from histora import __version__
from histora.api.body_limit import BodySizeLimitMiddleware
from histora.api.errors import install_error_handlers
from histora.api.middleware import RequestContextMiddleware
from histora.api.v1 import router as v1_router
from histora.errors import NotFoundError
from histora.log_config import configure_logging
from histora.settings import Settings, get_settings

API_PREFIX = "/api/v1"


def operation_id(route: APIRoute) -> str:
    """Stable operation ids, e.g. ``characters-list_characters``."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_api(settings: Settings | None = None, *, frontend_port: int | None = None) -> FastAPI:
    settings = settings or get_settings()
    # Here as well as in the app's lifespan: the API served alone (``uvicorn --factory``)
    # has no lifespan of its own, and would otherwise log at every level, unformatted.
    configure_logging(settings)
    # Swagger UI's script and styles are served from the package, not a CDN, so the
    # docs page also works offline and behind a strict firewall.
    api = FastAPIOffline(
        title="Histora API",
        version=__version__,
        description="Talk with history: the catalogue, chat, and administration.",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        static_url=f"{API_PREFIX}/docs/static",
        swagger_ui_oauth2_redirect_url=f"{API_PREFIX}/docs/oauth2-redirect",
        openapi_url=f"{API_PREFIX}/openapi.json",
        generate_unique_id_function=operation_id,
    )
    api.include_router(v1_router, prefix=API_PREFIX)

    @api.api_route(
        "/api/{path:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    async def unknown_api_route(path: str, request: Request) -> None:
        # Without this, unknown API paths fall through to the web frontend.
        raise NotFoundError(f"No API route at /api/{path}.")

    install_error_handlers(api)
    api.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins(frontend_port),
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID", "X-Process-Time-Ms"],
    )
    api.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts)
    api.add_middleware(BodySizeLimitMiddleware, max_file_bytes=settings.upload_max_bytes)
    api.add_middleware(RequestContextMiddleware)
    _document_event_streams(api)
    return api


def _document_event_streams(api: FastAPI) -> None:
    """A route that answers 200 with server-sent events says only that: FastAPI also
    lists its default JSON for every 200, which no client of those routes gets."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = build()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    content = operation.get("responses", {}).get("200", {}).get("content", {})
                    if "text/event-stream" in content:
                        content.pop("application/json", None)
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
