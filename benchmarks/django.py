"""Django in-process: the bare example project vs the same project with the agent, same run.

Both are driven through Django's own WSGI handler; they differ only in MIDDLEWARE.

    python -m benchmarks.django
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any

from ._inprocess import HEADERS, PARKED_WORKER, compare, park, row
from ._util import sink, table

POST_BODY = json.dumps({"name": "widget", "tags": ["a"] * 50, "note": "x" * 1700}).encode()
assert 1900 < len(POST_BODY) < 2200

MOESIF = "moesif_agent.integrations.django.MoesifMiddleware"


def environ(method: str, path: str, query: str = "", body: bytes = b"") -> dict[str, Any]:
    """What a WSGI server passes for one request from a typical HTTP client."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench/1.0",
        "HTTP_ACCEPT": "*/*",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate",
        "HTTP_CONNECTION": "keep-alive",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if body:
        env["CONTENT_TYPE"] = "application/json"
        env["CONTENT_LENGTH"] = str(len(body))
    return env


def driver(handler: Any, method: str, path: str, query: str = "", body: bytes = b"") -> Any:
    template = environ(method, path, query, body)

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
        return None

    def drive() -> None:
        env = dict(template)
        env["wsgi.input"] = io.BytesIO(body)
        result = handler(env, start_response)
        for _ in result:
            pass
        result.close()

    return drive


def main() -> list[list[object]]:
    with sink() as url:
        os.environ["MOESIF_APPLICATION_ID"] = "bench"
        os.environ["MOESIF_BASE_URI"] = url
        for name, value in PARKED_WORKER.items():
            os.environ[f"MOESIF_{name.upper()}"] = str(value)
        os.environ["DJANGO_SETTINGS_MODULE"] = "examples.django_project.settings"
        os.environ["EXAMPLE_INSTRUMENT"] = "1"

        import django
        from django.conf import settings
        from django.core.handlers.wsgi import WSGIHandler

        from moesif_agent.integrations.django import MoesifMiddleware

        django.setup()
        assert settings.MIDDLEWARE[0] == MOESIF
        wrapped = WSGIHandler()
        settings.MIDDLEWARE = settings.MIDDLEWARE[1:]  # the handlers build their chains now
        bare = WSGIHandler()
        agent = park(MoesifMiddleware(lambda request: None).agent)  # equal options: the same

        def deliver() -> None:
            assert agent.flush(timeout=120)

        cases = {
            "Django GET /items/42": ("GET", "/items/42", "", b""),
            "Django POST /items (2 KB JSON)": ("POST", "/items", "", POST_BODY),
            "Django GET /stream (5 chunks)": ("GET", "/stream", "delay=0", b""),
        }
        rows = []
        for name, args in cases.items():
            result = compare(driver(bare, *args), driver(wrapped, *args), deliver)
            rows.append(row(name, result))
        stats = agent.stats()
        agent.shutdown()
        assert stats["captured"] and not stats["dropped"], stats
    print(table(HEADERS, rows))
    return rows


if __name__ == "__main__":
    main()
