"""Flask in-process: bare example app vs the same app with the agent, same run.

Run with ``python -m benchmarks.wsgi``.
"""

from __future__ import annotations

import functools
import io
import json
import os
from typing import Any

from werkzeug.test import EnvironBuilder

from moesif_agent.integrations.wsgi import MoesifWSGIMiddleware

from ._inprocess import HEADERS, PARKED_WORKER, compare, park, row
from ._util import sink, table

POST_BODY = json.dumps({"name": "widget", "tags": ["a"] * 50, "note": "x" * 1700}).encode()
assert 1900 < len(POST_BODY) < 2200


MINIMAL_BODY = b'{"id": "42", "name": "item 42"}'


def minimal_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(MINIMAL_BODY)))]
    start_response("200 OK", headers)
    return [MINIMAL_BODY]


def driver(app: Any, **builder: Any) -> Any:
    template = EnvironBuilder(base_url="http://127.0.0.1:8000", **builder).get_environ()
    body = builder.get("data", b"")

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
        return None

    def drive() -> None:
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO(body)
        result = app(environ, start_response)
        for _ in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()

    return drive


def main() -> list[list[object]]:
    with sink() as url:
        os.environ["MOESIF_APPLICATION_ID"] = "bench"
        os.environ["MOESIF_BASE_URI"] = url
        for name, value in PARKED_WORKER.items():
            os.environ[f"MOESIF_{name.upper()}"] = str(value)
        from examples.flask_app import create_app

        bare = create_app(instrument=False)
        wrapped = create_app(instrument=True)
        agent = park(wrapped.extensions["moesif"].agent)

        def deliver() -> None:
            assert agent.flush(timeout=120)

        cases = {
            "Flask GET /items/42": {"path": "/items/42"},
            "Flask POST /items (2 KB JSON)": {
                "path": "/items",
                "method": "POST",
                "data": POST_BODY,
                "content_type": "application/json",
            },
            "Flask GET /stream (5 chunks)": {"path": "/stream", "query_string": "delay=0"},
        }
        rows = []
        for name, builder in cases.items():
            result = compare(driver(bare, **builder), driver(wrapped, **builder), deliver)
            rows.append(row(name, result))
        # The agent's own cost, without a framework's allocations around it.
        minimal = MoesifWSGIMiddleware(minimal_app)
        park(minimal.agent)
        result = compare(
            driver(minimal_app, path="/items/42"),
            driver(minimal, path="/items/42"),
            functools.partial(minimal.agent.flush, 120),
        )
        rows.append(row("minimal WSGI app GET (the middleware alone)", result))
        stats = agent.stats()
        agent.shutdown()
        assert not stats["dropped"], stats
    print(table(HEADERS, rows))
    return rows


if __name__ == "__main__":
    main()
