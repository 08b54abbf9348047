"""Chat model providers behind one Protocol.

The same OpenAI-compatible client talks to OpenRouter, any compatible endpoint, and
the embedded local model server; only the base URL, key and model names differ.
"""

from __future__ import annotations

from typing import Protocol

import httpx

from histora.providers.health import ComponentHealth


class ChatModel(Protocol):
    """A source of chat completions."""

    @property
    def provider_name(self) -> str: ...

    @property
    def models(self) -> list[str]: ...

    async def check_health(self) -> ComponentHealth: ...


class OpenAICompatibleChatModel:
    """Any endpoint speaking the OpenAI chat-completions API."""

    def __init__(
        self,
        *,
        provider_name: str,
        base_url: str,
        api_key: str | None,
        models: list[str],
        timeout_seconds: float,
        health_timeout_seconds: float = 3.0,
    ) -> None:
        self._provider_name = provider_name
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._models = list(models)
        self._timeout_seconds = timeout_seconds
        self._health_timeout_seconds = health_timeout_seconds

    @property
    def provider_name(self) -> str:
        return self._provider_name

    @property
    def models(self) -> list[str]:
        return list(self._models)

    @property
    def base_url(self) -> str:
        return self._base_url

    async def check_health(self) -> ComponentHealth:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            async with httpx.AsyncClient(timeout=self._health_timeout_seconds) as client:
                response = await client.get(f"{self._base_url}/models", headers=headers)
        except httpx.HTTPError as exc:
            return ComponentHealth(
                ok=False,
                detail=f"cannot reach {self._base_url}: {type(exc).__name__}",
                provider=self._provider_name,
            )
        if response.status_code >= 400:
            return ComponentHealth(
                ok=False,
                detail=f"{self._base_url}/models answered HTTP {response.status_code}",
                provider=self._provider_name,
            )
        return ComponentHealth(ok=True, detail="reachable", provider=self._provider_name)


class LocalChatModel(OpenAICompatibleChatModel):
    """The embedded llama-server: healthy only when it is installed and answering."""

    def __init__(self, *, installed_problem: str | None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._installed_problem = installed_problem

    async def check_health(self) -> ComponentHealth:
        if self._installed_problem:
            return ComponentHealth(
                ok=False, detail=self._installed_problem, provider=self.provider_name
            )
        return await super().check_health()
