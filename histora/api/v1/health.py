"""GET /api/v1/health: each component's status; 503 when any is down."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from histora.api.dependencies import ContainerDep, DbDep
from histora.services import health as health_service

router = APIRouter(prefix="/health", tags=["health"])


class ComponentStatus(BaseModel):
    status: Literal["ok", "unavailable"]
    provider: str
    detail: str
    latency_ms: float


class HealthStatus(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    components: dict[str, ComponentStatus]


@router.get(
    "",
    response_model=HealthStatus,
    responses={503: {"model": HealthStatus, "description": "A component is unavailable"}},
)
async def get_health(db: DbDep, container: ContainerDep) -> JSONResponse:
    report = await health_service.check(
        db,
        chat_model=container.chat_model,
        vector_store=container.vector_store,
        embedder=container.embedder,
        files=container.file_store,
    )
    body = HealthStatus(
        status=report.status,
        version=report.version,
        components={
            name: ComponentStatus(**vars(component))
            for name, component in report.components.items()
        },
    )
    return JSONResponse(body.model_dump(), status_code=200 if report.healthy else 503)
