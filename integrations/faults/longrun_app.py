"""The Flask example (with its agent) plus one diagnostics route *outside* the agent, for the
long run: ``GET /_faults/memory`` answers the worker's RSS, open descriptors and, once
``?trace=start`` began tracing, the memory allocated since then and still alive, with the
lines holding the most of it.

    gunicorn --workers 1 integrations.faults.longrun_app:app
"""

from __future__ import annotations

import gc
import json
import os
import tracemalloc
from collections.abc import Callable, Iterable
from typing import Any

from examples.flask_app import app as flask_app
from integrations.faults import procfs


def diagnostics(query: str) -> dict[str, Any]:
    if query == "trace=start":
        gc.collect()
        tracemalloc.start(1)  # one frame per allocation: enough to name the line, cheapest
    gc.collect()  # count what is reachable, not what a collection would free anyway
    result: dict[str, Any] = {
        "pid": os.getpid(),
        "rss_kb": procfs.rss_kb(os.getpid()),
        "fds": procfs.fd_count(os.getpid()),
    }
    if tracemalloc.is_tracing():
        result["traced_kb"] = tracemalloc.get_traced_memory()[0] / 1024
        top = tracemalloc.take_snapshot().statistics("lineno")[:8]
        result["top"] = [f"{s.size / 1024:.1f} KiB {s.count} blocks {s.traceback}" for s in top]
    return result


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/_faults/memory":
        body = json.dumps(diagnostics(environ.get("QUERY_STRING", ""))).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]
    response: Iterable[bytes] = flask_app(environ, start_response)
    return response
