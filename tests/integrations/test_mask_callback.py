"""Every adapter hands the mask callback the complete event, response body included."""

from __future__ import annotations

from typing import Any

import pytest

flask = pytest.importorskip("flask")
pytest.importorskip("starlette")

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from moesif_agent.integrations.asgi import MoesifASGIMiddleware
from moesif_agent.integrations.flask import Moesif
from moesif_agent.integrations.starlette import MoesifMiddleware

seen: list[dict[str, Any]] = []


def mask(event: dict[str, Any]) -> dict[str, Any]:
    seen.append(event)
    event["response"]["body"]["owner"] = "masked by callback"
    return event


@pytest.fixture(autouse=True)
def _clear() -> None:
    seen.clear()


def test_flask(settings: dict[str, Any]) -> None:
    app = flask.Flask(__name__)
    app.get("/thing")(lambda: {"owner": "alice", "password": "p"})
    moesif = Moesif(app, {**settings, "dry_run": True, "mask_event_model": mask})
    assert app.test_client().get("/thing").json == {"owner": "alice", "password": "p"}
    assert moesif.agent.flush(timeout=5)
    assert seen[0]["response"]["body"] == {"owner": "masked by callback", "password": "[REDACTED]"}
    assert moesif.agent.dry_run_events[0]["response"]["body"]["owner"] == "masked by callback"


@pytest.mark.parametrize("kind", ["asgi", "starlette"])
def test_asgi_and_starlette(settings: dict[str, Any], kind: str) -> None:
    async def thing(request: Request) -> JSONResponse:
        return JSONResponse({"owner": "alice", "password": "p"})

    app: Any = Starlette(routes=[Route("/thing", thing)])
    options = {**settings, "dry_run": True, "mask_event_model": mask}
    if kind == "asgi":
        app = middleware = MoesifASGIMiddleware(app, options)
    else:
        app.add_middleware(MoesifMiddleware, options)
        app.middleware_stack = app.build_middleware_stack()
        middleware = app.middleware_stack
        while not isinstance(middleware, MoesifASGIMiddleware):
            middleware = middleware.app

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return await client.get("/thing")

    import asyncio

    assert asyncio.run(call()).json() == {"owner": "alice", "password": "p"}
    assert middleware.agent.flush(timeout=5)
    assert seen[0]["response"]["body"] == {"owner": "masked by callback", "password": "[REDACTED]"}
