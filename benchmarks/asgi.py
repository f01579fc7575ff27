"""FastAPI and Starlette in-process: bare example apps vs the same apps with the agent.

Requests are driven straight through the ASGI callable (no server, no client library), many
per event-loop turn, so the figures are the apps' and the middleware's own cost.

    python -m benchmarks.asgi
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

from ._inprocess import HEADERS, PARKED_WORKER, compare, park, row
from ._util import sink, table
from .wsgi import POST_BODY


async def minimal_app(scope: Any, receive: Any, send: Any) -> None:
    body = b'{"id": "42", "name": "item 42"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"31")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Driver:
    def __init__(self, app: Any, method: str, path: str, body: bytes = b"") -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench/1.0"), (b"accept", b"*/*")]
        if body:
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
        self.scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "headers": headers, "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        self.request = {"type": "http.request", "body": body, "more_body": False}

    async def _one(self) -> None:
        request = self.request

        async def receive() -> dict[str, Any]:
            return request

        async def send(message: dict[str, Any]) -> None:
            pass

        await self.app(dict(self.scope), receive, send)

    async def _many(self, count: int) -> None:
        for _ in range(count):
            await self._one()

    def run(self, count: int) -> None:
        self.loop.run_until_complete(self._many(count))

    def __call__(self) -> None:
        self.run(1)


def main() -> list[list[object]]:
    with sink() as url:
        os.environ["MOESIF_APPLICATION_ID"] = "bench"
        os.environ["MOESIF_BASE_URI"] = url
        for name, value in PARKED_WORKER.items():
            os.environ[f"MOESIF_{name.upper()}"] = str(value)
        from examples import fastapi_app, starlette_app

        rows = []
        agents = []
        for label, module in (("FastAPI", fastapi_app), ("Starlette", starlette_app)):
            bare = module.create_app(instrument=False)
            wrapped = module.create_app(instrument=True)
            warm = Driver(wrapped, "GET", "/health")
            warm()  # builds the middleware stack, creating the agent
            node: Any = wrapped.middleware_stack
            while not hasattr(node, "agent"):
                node = node.app
            agent = park(node.agent)
            agents.append(agent)

            def deliver(agent: Any = agent) -> None:
                assert agent.flush(timeout=120)

            cases = {
                f"{label} GET /items/42": ("GET", "/items/42", b""),
                f"{label} POST /items (2 KB JSON)": ("POST", "/items", POST_BODY),
            }
            for name, (method, path, body) in cases.items():
                result = compare(
                    Driver(bare, method, path, body), Driver(wrapped, method, path, body), deliver
                )
                rows.append(row(name, result))
        # The agent's own cost, without a framework's allocations around it.
        from moesif_agent.integrations.asgi import MoesifASGIMiddleware

        minimal = MoesifASGIMiddleware(minimal_app)
        agents.append(park(minimal.agent))
        result = compare(
            Driver(minimal_app, "GET", "/items/42"),
            Driver(minimal, "GET", "/items/42"),
            functools.partial(minimal.agent.flush, 120),
        )
        rows.append(row("minimal ASGI app GET (the middleware alone)", result))
        for agent in agents:
            stats = agent.stats()
            agent.shutdown()
            assert not stats["dropped"], stats
    print(table(HEADERS, rows))
    return rows


if __name__ == "__main__":
    main()
