"""The health report every provider gives about itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ComponentHealth:
    ok: bool
    detail: str
    provider: str
