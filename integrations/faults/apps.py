"""The example apps under their real servers, one worker each, and how to find that worker."""

from __future__ import annotations

import time

from integrations.faults import procfs
from integrations.harness import AppServer

GUNICORN = ["gunicorn", "--bind", "127.0.0.1:{port}", "--graceful-timeout", "10"]
UVICORN = ["uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--no-access-log"]

APPS = {
    "flask-gunicorn": [*GUNICORN, "--workers", "1", "examples.flask_app:app"],
    "fastapi-uvicorn": [*UVICORN, "examples.fastapi_app:app"],
    "django-gunicorn": [*GUNICORN, "--workers", "1", "examples.django_project.wsgi:application"],
}


def worker_pids(server: AppServer) -> list[int]:
    """The processes that run the app: gunicorn's workers (the master's children), or the
    server process itself (uvicorn with one worker serves in its main process)."""
    return procfs.children(server.proc.pid) or [server.proc.pid]


def stop_timed(server: AppServer, timeout: float = 30) -> tuple[float, int]:
    """SIGTERM the server; (seconds until it exited, exit code)."""
    started = time.monotonic()
    code = server.stop(timeout=timeout)
    return time.monotonic() - started, code
