"""Settings for the gunicorn that `reflex run --env prod` starts (rxconfig.py chooses it
over Granian); gunicorn reads this file from the working directory. Options passed in
GUNICORN_CMD_ARGS still win over these."""

import os
import signal
from typing import Any

from histora.settings import get_settings
from histora.supervisor import die_with_parent
from histora.worker_sizing import usable_cpus, web_workers

# One worker without Redis; with it, WEB_CONCURRENCY or 2 x the usable cores + 1, at most 8.
workers = web_workers(
    shared_state=bool(get_settings().redis_url), environ=os.environ, cpus=usable_cpus()
)

# On SIGTERM a worker stops taking connections, closes the websockets, lets the REST
# streams in flight finish for up to STREAMS_GRACE_SECONDS, then cancels them (the
# replies are saved as stopped) and runs the app's shutdown: the worker running the
# local model lets replies other workers stream from it finish (up to 8 s), then the
# model and Chroma servers stop (each in under a second; 10 s at most). gunicorn kills
# a worker still running graceful_timeout seconds after the stop, so the shutdown must
# fit in it; the host must allow as long (docker stop -t, compose stop_grace_period).
STREAMS_GRACE_SECONDS = 5
graceful_timeout = 30


# Who started gunicorn (`reflex run`): this file is read before the app is loaded.
LAUNCHER = os.getppid()


def on_starting(server: Any) -> None:
    # If `reflex run` is killed outright (SIGKILL), gunicorn stops gracefully instead of
    # serving on as an orphan that holds the port. Set only now, after the app has been
    # loaded (--preload, a few seconds): a launcher gone by now means no start at all.
    die_with_parent(signal.SIGTERM)
    if os.getppid() != LAUNCHER:
        raise SystemExit("histora: the process that started gunicorn has ended; not serving.")


def post_worker_init(worker: Any) -> None:
    # uvicorn's worker leaves its own grace unbounded: streams would hold the shutdown.
    worker.config.timeout_graceful_shutdown = STREAMS_GRACE_SECONDS
    # Reflex starts uvicorn's h11 worker: asyncio's own event loop and HTTP parsed in pure
    # Python. Serve as in development and in the benchmarks instead, on uvloop with
    # httptools (both pinned in requirements.txt): requests start sooner and streams
    # cost less CPU (bench/README.md). Read at the worker's start, which comes next.
    # Another worker class chosen in GUNICORN_CMD_ARGS is left as it is (the h11 worker
    # chosen there looks like Reflex's own, and is switched too).
    if (worker.config.loop, worker.config.http) == ("asyncio", "h11"):
        worker.config.loop, worker.config.http = "uvloop", "httptools"
    # Likewise a worker whose master is killed: uvicorn workers never check their parent,
    # and would serve on, keeping the local model server too. On SIGTERM they shut down.
    die_with_parent(signal.SIGTERM)
    if os.getppid() != worker.ppid:  # the master ended before that took effect
        os.kill(os.getpid(), signal.SIGTERM)


# No runtime control socket: nothing here uses gunicornc, and its default path is one per
# user ($XDG_RUNTIME_DIR or $HOME/.gunicorn), which a second app on the machine takes over.
control_socket_disable = True
