"""Where uploaded source files live: a private directory by default.

Files are stored under generated keys, never under the name the uploader chose,
and never inside Reflex's public upload folder, so no URL serves them.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from pathlib import Path
from typing import Protocol

from histora.providers.health import ComponentHealth

_KEY_PATTERN = re.compile(r"^[a-f0-9]{32}$")


class FileStore(Protocol):
    @property
    def provider_name(self) -> str: ...

    async def save(self, data: bytes) -> str:
        """Store the bytes under a new generated key and return the key."""
        ...

    async def load(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None:
        """Remove the file; a missing file is not an error."""
        ...

    async def check_health(self) -> ComponentHealth: ...


class LocalFileStore:
    """Files in one private directory (mode 0700), each written atomically (mode 0600)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def provider_name(self) -> str:
        return "local-files"

    @property
    def root(self) -> Path:
        return self._root

    def _path(self, key: str) -> Path:
        # Keys are generated here; refusing anything else rules out path traversal.
        if not _KEY_PATTERN.fullmatch(key):
            raise ValueError("invalid storage key")
        return self._root / key[:2] / key

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._root.chmod(0o700)
        tmp = path.with_suffix(".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)

    async def save(self, data: bytes) -> str:
        key = secrets.token_hex(16)
        await asyncio.to_thread(self._write, key, data)
        return key

    async def load(self, key: str) -> bytes:
        return await asyncio.to_thread(self._path(key).read_bytes)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def check_health(self) -> ComponentHealth:
        def probe() -> bool:
            self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
            return os.access(self._root, os.W_OK)

        try:
            writable = await asyncio.to_thread(probe)
        except OSError as exc:
            return ComponentHealth(
                ok=False, detail=f"unavailable: {type(exc).__name__}", provider=self.provider_name
            )
        detail = "writable" if writable else "not writable"
        return ComponentHealth(ok=writable, detail=detail, provider=self.provider_name)
