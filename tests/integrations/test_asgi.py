"""The ASGI middleware: pure ASGI apps driven by hand, Starlette and FastAPI via httpx."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

pytest.importorskip("starlette")

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from moesif_agent.integrations.asgi import MoesifASGIMiddleware
from moesif_agent.integrations.starlette import MoesifMiddleware
from tests.integrations.stacks import read_body
from tests.recorder import Recorder

pytestmark = pytest.mark.anyio

Message = dict[str, Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Driver:
    """Runs one HTTP request through an ASGI app, with the test in control of both ends."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        *,
        method: str = "GET",
        path: str = "/",
        query: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        body: list[bytes] | None = None,
        root_path: str = "",
    ) -> None:
        self.app = app
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": root_path,
            "query_string": query,
            "headers": [(b"host", b"api.example"), *(headers or [])],
            "client": ("203.0.113.7", 50000),
            "server": ("api.example", 80),
        }
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        chunks = body or [b""]
        for i, chunk in enumerate(chunks):
            self.inbox.put_nowait(
                {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            )
        self.sent: list[Message] = []
        self.sent_event = asyncio.Event()

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        self.sent_event.set()

    def start(self) -> asyncio.Task[None]:
        return asyncio.ensure_future(self.app(self.scope, self.receive, self.send))

    async def run(self) -> Driver:
        await self.start()
        return self

    async def next_message(self) -> Message:
        while True:
            if self.sent:
                return self.sent.pop(0)
            self.sent_event.clear()
            await asyncio.wait_for(self.sent_event.wait(), 5)

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def headers(self) -> dict[bytes, bytes]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return dict(start["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def json_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    payload = await read_body(receive) or b'{"ok": true}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def moesif_of(app: Any) -> MoesifASGIMiddleware:
    """The agent middleware inside a Starlette app's middleware stack."""
    node = app.middleware_stack
    while not isinstance(node, MoesifASGIMiddleware):
        node = node.app
    return node


def events(middleware: Any, recorder: Recorder) -> list[dict[str, Any]]:
    agent = middleware.agent
    assert agent.flush(timeout=10)
    return recorder.events()


async def test_get_is_recorded_with_every_field(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    middleware = MoesifASGIMiddleware(json_app, settings)
    driver = await Driver(middleware, path="/items/7", query=b"q=1").run()
    txid = driver.headers[b"x-moesif-transaction-id"].decode()
    (event,) = events(middleware, recorder)
    assert event["transaction_id"] == txid
    request, response = event["request"], event["response"]
    assert request["uri"] == "http://api.example/items/7?q=1"
    assert request["verb"] == "GET"
    assert request["ip_address"] == "203.0.113.7"
    assert request["headers"]["Host"] == "api.example"
    assert request["headers"]["X-Moesif-Transaction-Id"] == txid
    assert response["status"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["headers"]["X-Moesif-Transaction-Id"] == txid
    assert response["body"] == {"ok": True}


async def test_the_app_reads_every_byte_of_a_body_sent_in_many_chunks(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    chunks = [b"x" * 100 for _ in range(50)]
    middleware = MoesifASGIMiddleware(json_app, settings)
    driver = await Driver(middleware, method="POST", body=chunks).run()
    assert driver.body == b"".join(chunks)
    (event,) = events(middleware, recorder)
    assert base64.b64decode(event["request"]["body"]) == b"x" * 5000


async def test_nothing_is_read_before_the_app_asks(settings: dict[str, Any]) -> None:
    reads: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reads.append("app started")
        await receive()
        reads.append("app read")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = MoesifASGIMiddleware(app, settings)
    driver = Driver(middleware, method="POST", body=[b"a"])
    original = driver.receive

    async def counting_receive() -> Message:
        reads.append("server receive")
        return await original()

    driver.receive = counting_receive  # type: ignore[method-assign]
    await driver.run()
    assert reads == ["app started", "server receive", "app read"]


async def test_sse_first_event_arrives_before_the_second_is_produced(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    produce_second = asyncio.Event()
    produced: list[int] = []

    async def events_stream() -> Any:
        produced.append(1)
        yield "data: 1\n\n"
        await produce_second.wait()
        produced.append(2)
        yield "data: 2\n\n"

    async def endpoint(request: Request) -> StreamingResponse:
        return StreamingResponse(events_stream(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/events", endpoint)])
    app.add_middleware(MoesifMiddleware, settings=settings)
    driver = Driver(app, path="/events")
    task = driver.start()
    assert (await driver.next_message())["type"] == "http.response.start"
    first = await driver.next_message()
    assert first["body"] == b"data: 1\n\n"
    assert produced == [1]  # the client has event one; event two does not exist yet
    produce_second.set()
    second = await driver.next_message()
    assert second["body"] == b"data: 2\n\n"
    await task
    event = events(moesif_of(app), recorder)
    assert base64.b64decode(event[0]["response"]["body"]) == b"data: 1\n\ndata: 2\n\n"
    assert event[0]["metadata"]["route"] == "/events"


async def test_concurrent_requests_keep_their_own_transaction_ids(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(0)  # interleave with the other requests
        own = dict(scope["headers"])[b"x-moesif-transaction-id"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": own})

    middleware = MoesifASGIMiddleware(app, settings)
    drivers = [Driver(middleware, path=f"/r/{n}") for n in range(200)]
    await asyncio.gather(*(driver.run() for driver in drivers))
    recorded = events(middleware, recorder)
    assert len(recorded) == 200
    assert len({e["transaction_id"] for e in recorded}) == 200
    for event in recorded:
        assert base64.b64decode(event["response"]["body"]).decode() == event["transaction_id"]
        assert event["response"]["headers"]["X-Moesif-Transaction-Id"] == event["transaction_id"]


async def test_client_disconnect_still_yields_an_event(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"tick ", "more_body": True})
        message = await receive()  # waits for the client to go away
        assert message["type"] == "http.disconnect"

    middleware = MoesifASGIMiddleware(app, settings)
    driver = Driver(middleware, path="/forever")
    task = driver.start()
    await driver.next_message()
    await driver.next_message()
    driver.inbox.put_nowait({"type": "http.disconnect"})
    await task
    (event,) = events(middleware, recorder)
    assert event["response"]["status"] == 200
    assert event["metadata"]["_moesif"]["aborted"]
    assert base64.b64decode(event["response"]["body"]) == b"tick "


async def test_an_exception_is_recorded_as_500_and_reraised_unchanged(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    class Boom(Exception):
        pass

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise Boom("original")

    middleware = MoesifASGIMiddleware(app, settings)
    with pytest.raises(Boom, match="original"):
        await Driver(middleware).run()
    (event,) = events(middleware, recorder)
    assert event["response"]["status"] == 500
    assert event["metadata"]["_moesif"]["error"]["class"] == "Boom"


async def test_cancellation_is_recorded_and_propagates(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    started = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"begin", "more_body": True})
        started.set()
        await asyncio.sleep(60)

    middleware = MoesifASGIMiddleware(app, settings)
    driver = Driver(middleware)
    task = driver.start()
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (event,) = events(middleware, recorder)
    assert event["metadata"]["_moesif"]["error"]["class"] == "CancelledError"
    assert event["response"]["status"] == 200


async def test_websocket_and_lifespan_pass_through_and_shutdown_flushes(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            await json_app(scope, receive, send)

    middleware = MoesifASGIMiddleware(app, {**settings, "batch_max_time": 30})
    await Driver(middleware).run()
    await middleware({"type": "websocket", "path": "/ws"}, _never, _discard)
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[Message] = []

    async def lifespan_receive() -> Message:
        return next(messages)

    async def lifespan_send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "lifespan.shutdown.complete":
            assert len(recorder.events()) == 1  # delivered before the server is told

    await middleware({"type": "lifespan"}, lifespan_receive, lifespan_send)
    assert seen == ["http", "websocket", "lifespan"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def _never() -> Message:
    raise AssertionError("not expected")


async def _discard(message: Message) -> None:
    pass


async def test_mount_prefix_head_and_empty_responses(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    async def item(request: Request) -> Response:
        if request.method == "HEAD":
            return Response(status_code=200)
        return Response(status_code=204)

    async def not_modified(request: Request) -> Response:
        return Response(status_code=304)

    inner = Starlette(routes=[Route("/items/{item_id}", item, methods=["GET", "HEAD"])])
    app = Starlette(routes=[Mount("/api", app=inner), Route("/cached", not_modified)])
    app.add_middleware(MoesifMiddleware, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.example") as client:
        assert (await client.get("/api/items/3")).status_code == 204
        assert (await client.head("/api/items/3")).status_code == 200
        assert (await client.get("/cached")).status_code == 304
    recorded = events(moesif_of(app), recorder)
    summary = sorted(
        (e["request"]["verb"], e["request"]["uri"], e["response"]["status"]) for e in recorded
    )
    assert summary == [
        ("GET", "http://api.example/api/items/3", 204),
        ("GET", "http://api.example/cached", 304),
        ("HEAD", "http://api.example/api/items/3", 200),
    ]
    routes = {e["metadata"]["route"] for e in recorded}
    assert routes == {"/api/items/{item_id}", "/cached"}


async def test_non_ascii_headers_and_huge_bodies(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    middleware = MoesifASGIMiddleware(json_app, {**settings, "max_body_size": 1000})
    payload = json.dumps({"data": "x" * 10_000}).encode()
    headers = [(b"x-city", "M\xfcnchen".encode("latin-1")), (b"content-type", b"application/json")]
    driver = await Driver(middleware, method="POST", headers=headers, body=[payload]).run()
    assert driver.body == payload
    (event,) = events(middleware, recorder)
    assert event["request"]["headers"]["X-City"] == "M\xfcnchen"
    assert base64.b64decode(event["request"]["body"]) == payload[:1000]
    note = event["metadata"]["_moesif"]["request_body"]
    assert note == {"truncated": True, "size": len(payload), "captured": 1000}


async def fastapi_calls(
    settings: dict[str, Any], recorder: Recorder
) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, Any, Any]]]:
    """A FastAPI app with callbacks, one GET and one POST: (GET event, POST event, calls)."""
    fastapi = pytest.importorskip("fastapi")
    api = fastapi.FastAPI()

    @api.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, Any]:
        return {"id": item_id}

    @api.post("/items", status_code=201)
    async def create(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    calls: list[tuple[str, Any, Any]] = []

    async def identify_user(request: Request, response: Response | None) -> str:
        calls.append(("user", type(request).__name__, response and response.status_code))
        return request.headers.get("x-user", "anonymous")

    def identify_company(request: Request, response: Response | None) -> str:
        calls.append(("company", type(request).__name__, response and response.status_code))
        return "acme"

    async def get_metadata(request: Request, response: Response | None) -> dict[str, Any]:
        return {"path_params": dict(request.path_params)}

    api.add_middleware(
        MoesifMiddleware,
        settings={
            **settings,
            "IDENTIFY_USER": identify_user,
            "IDENTIFY_COMPANY": identify_company,
            "GET_METADATA": get_metadata,
        },
    )
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.example") as client:
        got = await client.get("/items/5", headers={"x-user": "u-5"})
        assert got.json() == {"id": 5}
        created = await client.post("/items", json={"name": "w"})
        assert created.status_code == 201
    recorded = {e["request"]["verb"]: e for e in events(moesif_of(api), recorder)}
    return recorded["GET"], recorded["POST"], calls


async def test_fastapi_route_template_and_path_params(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    get, _, _ = await fastapi_calls(settings, recorder)
    assert get["metadata"]["route"] == "/items/{item_id}"
    assert get["metadata"]["path_params"] == {"item_id": "5"}


async def test_fastapi_bodies(settings: dict[str, Any], recorder: Recorder) -> None:
    get, post, _ = await fastapi_calls(settings, recorder)
    assert get["response"]["body"] == {"id": 5}
    assert post["request"]["body"] == {"name": "w"}
    assert post["response"]["body"] == {"name": "w"}
    assert post["response"]["status"] == 201


async def test_fastapi_callbacks_get_starlette_objects_once_each(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    get, _, calls = await fastapi_calls(settings, recorder)
    assert get["user_id"] == "u-5"
    assert get["company_id"] == "acme"
    assert ("user", "Request", 200) in calls
    assert ("company", "Request", 201) in calls
    assert len(calls) == 4  # once per callback per request


async def test_log_body_false_and_raising_callbacks(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    def broken(request: Any, response: Any) -> str:
        raise RuntimeError("callback bug")

    middleware = MoesifASGIMiddleware(
        json_app, {**settings, "log_body": False, "identify_user": broken, "skip": broken}
    )
    driver = await Driver(middleware, method="POST", body=[b'{"a": 1}']).run()
    assert driver.body == b'{"a": 1}'
    (event,) = events(middleware, recorder)
    assert "body" not in event["request"]
    assert "body" not in event["response"]
    assert "user_id" not in event


async def test_skip_callback_sees_the_response(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    def skip(request: Request, response: Response) -> bool:
        return request.url.path == "/health" and response.status_code == 200

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/health", health), Route("/other", health)])
    app.add_middleware(MoesifMiddleware, {**settings, "skip": skip})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        await client.get("/health")
        await client.get("/other")
    recorded = events(moesif_of(app), recorder)
    assert [e["request"]["uri"] for e in recorded] == ["http://x/other"]


TXID = "5b0c1f7e-8d2a-4c6b-9e1f-3a7d2c9b4e10"


async def test_an_incoming_transaction_id_from_a_trusted_peer_is_reused(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    middleware = MoesifASGIMiddleware(json_app, settings)
    driver = Driver(middleware, headers=[(b"x-moesif-transaction-id", TXID.encode())])
    driver.scope["client"] = ("127.0.0.1", 50000)  # a local proxy
    await driver.run()
    assert driver.headers[b"x-moesif-transaction-id"] == TXID.encode()
    assert events(middleware, recorder)[0]["transaction_id"] == TXID


async def test_example_apps_serve_the_contract_routes(
    settings: dict[str, Any], recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("fastapi")
    monkeypatch.setenv("MOESIF_APPLICATION_ID", settings["application_id"])
    monkeypatch.setenv("MOESIF_BASE_URI", settings["base_uri"])
    monkeypatch.setenv("MOESIF_BATCH_MAX_TIME", "0.05")
    from examples import fastapi_app, starlette_app

    for module in (fastapi_app, starlette_app):
        app = module.create_app()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            assert (await client.get("/items/5")).json() == {"id": "5", "name": "item 5"}
            assert (await client.post("/items", json={"a": 1})).json() == {"a": 1}
            assert (await client.get("/stream?delay=0")).text.count("data:") == 5
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/error")).status_code == 500
        recorded = events(moesif_of(app), recorder)
        routes = sorted(e["metadata"]["route"] for e in recorded)
        assert routes == ["/error", "/health", "/items", "/items/{item_id}", "/stream"]
        recorder.received.clear()


async def no_lifespan(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise ValueError("only HTTP here")  # as Django's ASGI handler does
    await json_app(scope, receive, send)


async def test_flush_on_shutdown_answers_for_an_app_without_lifespan_and_flushes(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    from moesif_agent.integrations.asgi import FlushOnShutdown

    middleware = MoesifASGIMiddleware(no_lifespan, {**settings, "batch_max_time": 30})
    await Driver(middleware).run()
    sent = await run_lifespan(FlushOnShutdown(no_lifespan))
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert len(recorder.events()) == 1  # flushed before the server was told


async def test_the_middleware_lets_the_server_see_an_app_refuse_lifespan(
    settings: dict[str, Any],
) -> None:
    middleware = MoesifASGIMiddleware(no_lifespan, settings)
    with pytest.raises(ValueError, match="only HTTP here"):
        await run_lifespan(middleware)


async def run_lifespan(app: Any) -> list[Message]:
    """A server's lifespan conversation: startup, then shutdown; returns what the app sent."""
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[Message] = []

    async def lifespan_receive() -> Message:
        return next(messages)

    async def lifespan_send(message: Message) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, lifespan_receive, lifespan_send)
    return sent


async def test_a_real_startup_failure_of_the_app_still_fails() -> None:
    from moesif_agent.integrations.asgi import FlushOnShutdown

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        raise RuntimeError("no database")

    async def lifespan_receive() -> Message:
        return {"type": "lifespan.startup"}

    with pytest.raises(RuntimeError, match="no database"):
        await FlushOnShutdown(failing)({"type": "lifespan"}, lifespan_receive, _discard)
