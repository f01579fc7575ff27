"""Governance in the adapters: a blocked request never reaches the app, and gets the rule's
exact response; matching non-blocking rules add their headers to the real response."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest

pytest.importorskip("flask")
pytest.importorskip("starlette")

import flask
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from werkzeug.test import Client

from moesif_agent.integrations.flask import Moesif
from moesif_agent.integrations.starlette import MoesifMiddleware
from moesif_agent.integrations.wsgi import MoesifWSGIMiddleware
from tests.recorder import Recorder

RULES = [
    {
        "_id": "quota-rule",
        "type": "user",
        "block": True,
        "response": {
            "status": 429,
            "headers": {"X-Rate-Limit-Month": "{{1}}"},
            "body": {"error": "quota of {{1}} exceeded on the {{0}} plan", "codes": [1, "{{0}}"]},
        },
    },
    {
        "_id": "tag-rule",
        "type": "regex",
        "block": False,
        "regex_config": [{"conditions": [{"path": "request.route", "value": "/items"}]}],
        "response": {"headers": {"X-Governed": "tagged by rule"}},
    },
    {
        "_id": "body-rule",
        "type": "regex",
        "block": True,
        "regex_config": [
            {"conditions": [{"path": "request.body.operationName", "value": "^Drop"}]}
        ],
        "response": {"status": 403, "body": {"error": "not allowed"}},
    },
]
CONFIG = {
    "user_rules": {"free-user": [{"rules": "quota-rule", "values": {"0": "Free", "1": 1000}}]}
}
BLOCK_BODY = {"error": "quota of 1000 exceeded on the Free plan", "codes": [1, "Free"]}


WARM_UP = "/warm-up"  # a request whose only purpose is to start the agent


def fetched(agent: Any, recorder: Recorder) -> None:
    """Once a first request has started the agent, its worker fetches the config and rules the
    recorder serves before it answers a flush; the warm-up's event is then forgotten."""
    assert agent.flush(timeout=10)
    recorder.received.clear()


def check_events(agent: Any, recorder: Recorder) -> dict[str, dict[str, Any]]:
    assert agent.flush(timeout=10)
    return {e["request"]["uri"].split("?")[0].rsplit("/", 1)[-1]: e for e in recorder.events()}


def test_wsgi_blocked_request_never_reaches_the_app(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    calls: list[str] = []
    identified: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        calls.append(environ["PATH_INFO"])
        data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data or b"{}"]

    def identify_user(app: Any, environ: dict[str, Any], headers: Any = None) -> str | None:
        identified.append(environ["PATH_INFO"])
        return environ.get("HTTP_X_USER")

    recorder.serve_config(CONFIG, RULES)
    middleware = MoesifWSGIMiddleware(app, settings, identify_user=identify_user)
    client = Client(middleware)
    client.get(WARM_UP).close()  # the exchange ends when the server closes the response
    fetched(middleware.agent, recorder)
    calls.clear()
    identified.clear()
    blocked = client.get("/items/blocked", headers={"X-User": "free-user"})
    assert blocked.status_code == 429
    assert json.loads(blocked.data) == BLOCK_BODY
    assert blocked.headers["Content-Type"] == "application/json"
    assert blocked.headers["Content-Length"] == str(len(blocked.data))
    assert blocked.headers["X-Rate-Limit-Month"] == "1000"
    assert blocked.headers["X-Governed"] == "tagged by rule"
    assert blocked.headers["X-Moesif-Transaction-Id"]
    allowed = client.get("/items/allowed", headers={"X-User": "paying-user"})
    assert (allowed.status_code, allowed.data) == (200, b"{}")
    assert allowed.headers["X-Governed"] == "tagged by rule"
    body = json.dumps({"operationName": "DropTables"})
    graphql = client.post("/graphql", data=body, content_type="application/json")
    assert graphql.status_code == 403
    query = json.dumps({"operationName": "Read"})
    read = client.post("/graphql2", data=query, content_type="application/json")
    assert read.data == query.encode()  # read ahead for the rule, replayed to the app intact
    assert calls == ["/items/allowed", "/graphql2"]
    assert identified == ["/items/blocked", "/items/allowed", "/graphql", "/graphql2"]
    events = check_events(middleware.agent, recorder)
    assert events["blocked"]["blocked_by"] == "quota-rule"
    assert events["blocked"]["user_id"] == "free-user"
    assert events["blocked"]["response"]["status"] == 429
    assert events["blocked"]["response"]["body"] == BLOCK_BODY
    assert "blocked_by" not in events["allowed"]
    assert events["graphql"]["blocked_by"] == "body-rule"
    assert events["graphql2"]["request"]["body"] == {"operationName": "Read"}
    assert middleware.agent.stats()["blocked"] == 2


def test_flask_blocked_request_never_runs_the_view(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    app = flask.Flask(__name__)
    views: list[str] = []

    @app.get("/items/<name>")
    def item(name: str) -> Any:
        views.append(name)
        return {"name": name}

    recorder.serve_config(CONFIG, RULES)
    moesif = Moesif(app, settings)
    client = app.test_client()
    client.get(WARM_UP).close()  # the exchange ends when the server closes the response
    fetched(moesif.agent, recorder)
    credentials = {"Authorization": "Basic " + base64.b64encode(b"free-user:x").decode()}
    blocked = client.get("/items/one", headers=credentials)
    assert (blocked.status_code, blocked.json) == (429, BLOCK_BODY)
    assert client.get("/items/two").json == {"name": "two"}
    assert views == ["two"]
    events = check_events(moesif.agent, recorder)
    assert events["one"]["blocked_by"] == "quota-rule"
    assert events["one"]["user_id"] == "free-user"  # from the Authorization header


@pytest.mark.anyio
async def test_asgi_blocked_request_never_runs_the_endpoint(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    views: list[str] = []

    async def item(request: Request) -> JSONResponse:
        views.append(request.path_params["name"])
        return JSONResponse(await request.json() if request.method == "POST" else {})

    async def identify_user(request: Request, response: Any) -> str | None:
        return request.headers.get("x-user")

    recorder.serve_config(CONFIG, RULES)
    app = Starlette(routes=[Route("/items/{name}", item, methods=["GET", "POST"])])
    app.add_middleware(MoesifMiddleware, settings={**settings, "identify_user": identify_user})
    app.middleware_stack = app.build_middleware_stack()
    node: Any = app.middleware_stack
    while not isinstance(node, MoesifMiddleware):
        node = node.app
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.example") as client:
        await client.get(WARM_UP)
        fetched(node.agent, recorder)
        blocked = await client.get("/items/one", headers={"x-user": "free-user"})
        assert blocked.status_code == 429
        assert blocked.json() == BLOCK_BODY
        assert blocked.headers["x-rate-limit-month"] == "1000"
        assert blocked.headers["content-length"] == str(len(blocked.content))
        allowed = await client.get("/items/two", headers={"x-user": "someone"})
        assert allowed.headers["x-governed"] == "tagged by rule"
        dropped = await client.post("/items/three", json={"operationName": "DropAll"})
        assert dropped.status_code == 403
        kept = await client.post("/items/four", json={"operationName": "Read", "n": 1})
        assert kept.json() == {"operationName": "Read", "n": 1}
    assert views == ["two", "four"]
    events = check_events(node.agent, recorder)
    assert events["one"]["blocked_by"] == "quota-rule"
    assert events["three"]["blocked_by"] == "body-rule"
    assert events["four"]["request"]["body"] == {"operationName": "Read", "n": 1}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_rules_fetched_from_the_collector_block_requests(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    recorder.serve_config(CONFIG, RULES)
    calls: list[int] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        calls.append(1)
        start_response("200 OK", [])
        return [b"ok"]

    middleware = MoesifWSGIMiddleware(app, settings)
    client = Client(middleware)
    headers = {"Authorization": "Basic " + base64.b64encode(b"free-user:x").decode()}
    assert client.get("/first", headers=headers).data == b"ok"  # before the first fetch
    assert middleware.agent.flush(timeout=10)  # the worker has fetched config and rules
    assert client.get("/second", headers=headers).status_code == 429
    assert calls == [1]
