"""In-repo fakes of every provider, for tests."""

from __future__ import annotations

from histora.providers.health import ComponentHealth


class FakeChatModel:
    def __init__(self, *, healthy: bool = True, models: list[str] | None = None) -> None:
        self.healthy = healthy
        self._models = models or ["fake-model"]

    @property
    def provider_name(self) -> str:
        return "fake"

    @property
    def models(self) -> list[str]:
        return list(self._models)

    async def check_health(self) -> ComponentHealth:
        detail = "reachable" if self.healthy else "fake model is down"
        return ComponentHealth(ok=self.healthy, detail=detail, provider="fake")


class FakeVectorStore:
    def __init__(self, *, healthy: bool = True) -> None:
        self.healthy = healthy

    @property
    def provider_name(self) -> str:
        return "fake"

    async def check_health(self) -> ComponentHealth:
        detail = "reachable" if self.healthy else "fake vector store is down"
        return ComponentHealth(ok=self.healthy, detail=detail, provider="fake")
