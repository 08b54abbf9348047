"""The vector store behind a Protocol: Chroma in-process by default, or a Chroma server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from histora.providers.health import ComponentHealth


class VectorStore(Protocol):
    @property
    def provider_name(self) -> str: ...

    async def check_health(self) -> ComponentHealth: ...


class ChromaVectorStore:
    """Chroma through a persistent client (one writing process) or an HTTP client."""

    def __init__(self, *, path: Path | None = None, url: str | None = None) -> None:
        if (path is None) == (url is None):
            raise ValueError("give exactly one of path or url")
        self._path = path
        self._url = url
        self._client: Any = None

    @property
    def provider_name(self) -> str:
        return "chroma-http" if self._url else "chroma-persistent"

    def _get_client(self) -> Any:
        if self._client is None:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            chroma_settings = ChromaSettings(anonymized_telemetry=False)
            if self._url:
                parsed = urlparse(self._url)
                self._client = chromadb.HttpClient(
                    host=parsed.hostname or "127.0.0.1",
                    port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                    ssl=parsed.scheme == "https",
                    settings=chroma_settings,
                )
            else:
                assert self._path is not None
                self._path.mkdir(parents=True, exist_ok=True)
                self._client = chromadb.PersistentClient(
                    path=str(self._path), settings=chroma_settings
                )
        return self._client

    async def check_health(self) -> ComponentHealth:
        try:
            await asyncio.wait_for(asyncio.to_thread(lambda: self._get_client().heartbeat()), 5)
        except Exception as exc:  # noqa: BLE001 - any failure means unavailable
            self._client = None
            return ComponentHealth(
                ok=False, detail=f"unavailable: {type(exc).__name__}", provider=self.provider_name
            )
        return ComponentHealth(ok=True, detail="reachable", provider=self.provider_name)
