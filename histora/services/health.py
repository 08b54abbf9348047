"""System health: database, chat model, vector store, embedder and file store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from histora import __version__
from histora.providers.chat_models import ChatModel
from histora.providers.embedders import Embedder
from histora.providers.file_store import FileStore
from histora.providers.health import ComponentHealth
from histora.providers.vector_store import VectorStore

COMPONENT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class ComponentReport:
    status: Literal["ok", "unavailable"]
    provider: str
    detail: str
    latency_ms: float


@dataclass(frozen=True)
class HealthReport:
    status: Literal["ok", "degraded"]
    version: str
    components: dict[str, ComponentReport]

    @property
    def healthy(self) -> bool:
        return self.status == "ok"


async def _timed(check: Awaitable[ComponentHealth], provider: str) -> ComponentReport:
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(check, COMPONENT_TIMEOUT_SECONDS)
    except TimeoutError:
        result = ComponentHealth(ok=False, detail="timed out", provider=provider)
    latency = round((time.perf_counter() - started) * 1000, 1)
    return ComponentReport(
        status="ok" if result.ok else "unavailable",
        provider=result.provider,
        detail=result.detail,
        latency_ms=latency,
    )


async def _check_database(db: AsyncSession) -> ComponentHealth:
    backend = db.bind.dialect.name if db.bind is not None else "unknown"
    try:
        await db.exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception as exc:  # noqa: BLE001 - any failure means unavailable
        return ComponentHealth(
            ok=False, detail=f"query failed: {type(exc).__name__}", provider=backend
        )
    return ComponentHealth(ok=True, detail="reachable", provider=backend)


async def check(
    db: AsyncSession,
    *,
    chat_model: ChatModel,
    vector_store: VectorStore,
    embedder: Embedder | None = None,
    files: FileStore | None = None,
) -> HealthReport:
    checks = {
        "database": _timed(_check_database(db), "database"),
        "model": _timed(chat_model.check_health(), chat_model.provider_name),
        "vector_store": _timed(vector_store.check_health(), vector_store.provider_name),
    }
    if embedder is not None:
        checks["embedder"] = _timed(embedder.check_health(), embedder.provider_name)
    if files is not None:
        checks["file_store"] = _timed(files.check_health(), files.provider_name)
    reports = await asyncio.gather(*checks.values())
    components = dict(zip(checks, reports, strict=True))
    healthy = all(report.status == "ok" for report in components.values())
    return HealthReport(
        status="ok" if healthy else "degraded", version=__version__, components=components
    )
