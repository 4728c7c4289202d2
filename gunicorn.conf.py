"""gunicorn settings for the `web` line of the Procfile, all from the environment (see docs/deploy.md).

PORT (default 8000) and BIND_HOST (default 0.0.0.0), WEB_CONCURRENCY worker processes (default 2),
GUNICORN_THREADS threads per worker (default 1), GUNICORN_TIMEOUT seconds (default 60).
"""

from __future__ import annotations

import os

from prometheus_client import multiprocess

bind = f"{os.environ.get('BIND_HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 20
# Django's logging writes the application's lines; gunicorn's access log is off unless asked for.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
# Prevents a worker from serving forever with whatever it leaked; the jitter staggers restarts.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = 200
# gunicorn >= 25.1 opens a control socket in $HOME by default; several stacks on one machine would share it.
control_socket_disable = True


def child_exit(server: object, worker: object) -> None:
    """A worker that exits leaves its metric files behind: mark them so live gauges stop counting it."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
