"""The managed Chroma server: `chroma run` on loopback over the local vector path.

A persistent Chroma path allows one process, yet several workers all search and
delete vectors. So when the app runs several workers (a Redis URL is set) and no
``HISTORA_CHROMA_URL`` is given, the worker holding a file lock runs one Chroma
server over ``resolved_chroma_path`` and every worker talks to it over HTTP.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from histora.providers.local_server import LocalServer
from histora.settings import Settings

LOOPBACK = "127.0.0.1"


def default_binary() -> Path:
    """The `chroma` command the chromadb package installs beside this interpreter."""
    return Path(sysconfig.get_path("scripts")) / "chroma"


class LocalChromaServer(LocalServer):
    """Owns the `chroma run` process: start, health-check (heartbeat), restart, stop."""

    event = "local_chroma"
    required = True
    port_setting = "HISTORA_CHROMA_LOCAL_PORT"

    def __init__(self, settings: Settings, *, binary: Path | None = None) -> None:
        url = f"http://{LOOPBACK}:{settings.chroma_local_port}"  # as settings.resolved_chroma_url
        super().__init__(
            host=LOOPBACK,
            port=settings.chroma_local_port,
            health_url=f"{url}/api/v2/heartbeat",
            log_path=settings.data_dir / "local-chroma.log",
            lock_path=settings.data_dir / "local-chroma.lock",
        )
        self.url = url
        self.binary = binary or default_binary()
        self.path = settings.resolved_chroma_path

    def installation_problem(self) -> str | None:
        if not self.binary.is_file():
            return (
                f"the Chroma server program is missing: {self.binary} not found (it comes "
                "with the chromadb package: pip install -r requirements.txt), or set "
                "HISTORA_CHROMA_URL to a Chroma server you run."
            )
        return None

    def _command(self) -> list[str]:
        self.path.mkdir(parents=True, exist_ok=True)
        # The server logs every request at INFO (about 700 bytes each) to a log file that
        # only grows: warnings and errors only. `env` adds the variable and execs chroma,
        # so the app's own environment is neither read nor changed here.
        return [
            "/usr/bin/env", "RUST_LOG=warn",
            str(self.binary), "run",
            "--host", self.host,
            "--port", str(self.port),
            "--path", str(self.path),
        ]  # fmt: skip
