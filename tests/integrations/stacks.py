"""One app, six stacks: the fixture the adapter contract (test_contract.py) runs on.

Every stack serves the same routes with the same behaviour:

- ``GET /items/{id}``: 200 JSON ``{"id": id, "name": "item <id>"}``
- ``POST /items``: 201, the request's JSON body echoed
- ``GET /stream``: 200 ``text/plain`` in ``CHUNKS``; before the second chunk the app waits on
  ``APP.gate`` (open unless a test closes it), so a test can prove chunks are not buffered
- ``GET /health``: 200 JSON
- ``GET /error``: the handler raises ``RuntimeError``

and notes in ``APP`` each request it sees (method, path, headers, body) and each chunk it
produces. A stack serves the app wrapped by the agent (``stack.serve(**options)``) or bare
(``stack.bare()``); both give a ``Served`` with the same client: ``send()`` for a whole
exchange, ``stream()`` to read a response chunk by chunk. WSGI stacks run in-process through
``httpx.WSGITransport`` (the plain app under werkzeug's ``LintMiddleware``); ASGI stacks run
on an event loop in a background thread (an anyio blocking portal) through
``httpx.ASGITransport``, except ``stream()``, which drives the ASGI app by hand because the
transport buffers whole responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import pytest

from tests.recorder import Recorder

BASE_URL = "http://api.example"
CLIENT = "203.0.113.9"  # an untrusted peer (not loopback, not a private network)
LOOPBACK = "127.0.0.1"
CHUNKS = (b"chunk 1\n", b"chunk 2\n", b"chunk 3\n")
GATE_TIMEOUT = 5.0  # a buffering adapter makes the app wait this long, then the test fails
TRANSACTION_ID = "x-moesif-transaction-id"

STACKS = ("wsgi", "flask", "asgi", "starlette", "django-wsgi", "django-asgi")
# The route template each stack records as metadata.route for GET /items/{id} (None: no router).
ITEM_ROUTES: dict[str, str | None] = {
    "wsgi": None,
    "flask": "/items/<item_id>",
    "asgi": None,
    "starlette": "/items/{item_id}",
    "django-wsgi": "/items/<item_id>",
    "django-asgi": "/items/<item_id>",
}

Message = dict[str, Any]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def http_scope(
    path: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
    client: Any = (CLIENT, 50000),
) -> Message:
    """The scope an ASGI server gives a ``GET path`` from ``client`` to http://api.example."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"api.example"), *headers],
        "client": client,
        "server": ("api.example", 80),
    }


async def read_body(receive: Any) -> bytes:
    """The whole request body, as a bare ASGI app reads it: messages until no ``more_body``."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


# What the app saw and did ---------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class AppState:
    """Shared by every stack's handlers; reset before each test."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.seen: list[Seen] = []
        self.produced: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def saw(self, method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        self.seen.append(Seen(method, path, {k.lower(): v for k, v in headers}, body))

    def calls(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path == path]

    def produce(self) -> Iterator[bytes]:
        for n, chunk in enumerate(CHUNKS, 1):
            if n == 2 and not self.gate.wait(GATE_TIMEOUT):
                self.produced.append(0)  # 0: the gate never opened
            self.produced.append(n)
            yield chunk

    async def aproduce(self) -> AsyncIterator[bytes]:
        for n, chunk in enumerate(CHUNKS, 1):
            if n == 2:
                deadline = time.monotonic() + GATE_TIMEOUT
                while not self.gate.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.002)
                if not self.gate.is_set():
                    self.produced.append(0)
            self.produced.append(n)
            yield chunk


APP = AppState()


def item(item_id: str) -> dict[str, str]:
    return {"id": item_id, "name": f"item {item_id}"}


HEALTH = {"status": "ok"}


class HandlerFailed(RuntimeError):
    pass


def fail() -> NoReturn:
    raise HandlerFailed("the handler failed on purpose")


def request_path(*args: Any) -> str | None:
    """The request path from any stack's callback arguments: (app, environ[, headers]),
    (scope, response_info), (Request, Response) or Django's (request, response)."""
    for arg in args:
        if isinstance(arg, dict):
            if "PATH_INFO" in arg:
                return str(arg["PATH_INFO"])
            if arg.get("type") == "http":
                return str(arg["path"])
        elif hasattr(arg, "url") and hasattr(arg, "scope"):  # Starlette Request
            return str(arg.url.path)
        elif isinstance(getattr(arg, "path_info", None), str):  # Django HttpRequest
            return str(arg.path_info)
    return None


# What the client got --------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the server got from the app: the response, and the exception that escaped the
    app (``error``, as ``"Type: message"``) if one did."""

    status: int | None
    headers: list[tuple[str, str]]  # lower-case names, in order
    body: bytes
    error: str | None = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)

    def without_transaction_id(self) -> Outcome:
        headers = [(k, v) for k, v in self.headers if k != TRANSACTION_ID]
        return Outcome(self.status, headers, self.body, self.error)

    @classmethod
    def of(cls, response: httpx.Response) -> Outcome:
        return cls(response.status_code, response.headers.multi_items(), response.content)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass
class ClientRequest:
    method: str = "GET"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    client: str = CLIENT


class Served:
    """The app on one stack, wrapped by the agent (``agent`` set) or bare (``agent`` None)."""

    def __init__(self, agent: Any, recorder: Recorder) -> None:
        self.agent = agent
        self.recorder = recorder

    def send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        client: str = CLIENT,
    ) -> Outcome:
        return self._send(ClientRequest(method, path, dict(headers or {}), body, client))

    def get(self, path: str, **kwargs: Any) -> Outcome:
        return self.send("GET", path, **kwargs)

    def post_json(self, path: str, payload: bytes, **kwargs: Any) -> Outcome:
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        return self.send("POST", path, headers=headers, body=payload, **kwargs)

    def _send(self, request: ClientRequest) -> Outcome:
        raise NotImplementedError

    def stream(self, path: str) -> contextlib.AbstractContextManager[Iterator[bytes]]:
        """The response body chunk by chunk, each as soon as the client has it."""
        raise NotImplementedError

    def events(self, path: str) -> list[dict[str, Any]]:
        """The events recorded for requests to ``path``, once everything was delivered."""
        assert self.agent is not None, "a bare app records nothing"
        assert self.agent.flush(timeout=10)
        return [
            event
            for event in self.recorder.events()
            if urlsplit(event["request"]["uri"]).path == path
        ]


class WSGIServed(Served):
    def __init__(self, app: WSGIApp, agent: Any, recorder: Recorder) -> None:
        super().__init__(agent, recorder)
        self.app = app

    def _client(self, client: str = CLIENT) -> httpx.Client:
        transport = httpx.WSGITransport(app=self.app, remote_addr=client)
        return httpx.Client(transport=transport, base_url=BASE_URL)

    def _send(self, request: ClientRequest) -> Outcome:
        with self._client(request.client) as client:
            try:
                response = client.request(
                    request.method, request.path, headers=request.headers, content=request.body
                )
            except Exception as exc:  # escaped the app: a server would log it and answer 500
                return Outcome(None, [], b"", _error(exc))
        return Outcome.of(response)

    @contextlib.contextmanager
    def stream(self, path: str) -> Iterator[Iterator[bytes]]:
        with self._client() as client, client.stream("GET", path) as response:
            assert response.status_code == 200
            yield response.iter_raw()


class ASGIServed(Served):
    def __init__(self, app: ASGIApp, agent: Any, recorder: Recorder, portal: Any) -> None:
        super().__init__(agent, recorder)
        self.app = app
        self.portal = portal

    def _send(self, request: ClientRequest) -> Outcome:
        return self.portal.call(self._asend, request)  # type: ignore[no-any-return]

    async def _asend(self, request: ClientRequest) -> Outcome:
        sent: list[Message] = []

        async def tapped(scope: Any, receive: Any, send: Any) -> None:
            async def tap(message: Message) -> None:
                sent.append(message)
                await send(message)

            await self.app(scope, receive, tap)

        transport = httpx.ASGITransport(app=tapped, client=(request.client, 50000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            try:
                response = await client.request(
                    request.method, request.path, headers=request.headers, content=request.body
                )
            except Exception as exc:  # escaped the app: what had it sent before?
                return _from_messages(sent, _error(exc))
        return Outcome.of(response)

    @contextlib.contextmanager
    def stream(self, path: str) -> Iterator[Iterator[bytes]]:
        messages: queue.Queue[Message] = queue.Queue()
        scope = http_scope(path, [(b"accept", b"*/*")])

        async def run() -> None:
            requested = False

            async def receive() -> Message:
                nonlocal requested
                if not requested:
                    requested = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                await asyncio.get_running_loop().create_future()  # the client stays connected
                raise AssertionError("unreachable")

            async def send(message: Message) -> None:
                messages.put(message)

            await self.app(scope, receive, send)

        def chunks() -> Iterator[bytes]:
            start = messages.get(timeout=GATE_TIMEOUT * 2)
            assert (start["type"], start["status"]) == ("http.response.start", 200)
            while True:
                message = messages.get(timeout=GATE_TIMEOUT * 2)
                if message.get("body"):
                    yield message["body"]
                if not message.get("more_body"):
                    return

        future = self.portal.start_task_soon(run)
        try:
            yield chunks()
        finally:
            APP.gate.set()
            future.result(timeout=GATE_TIMEOUT * 2)


def _from_messages(sent: list[Message], error: str) -> Outcome:
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    if start is None:
        return Outcome(None, [], b"", error)
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in start["headers"]]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Outcome(start["status"], headers, body, error)


# The stacks -------------------------------------------------------------------------------------


class Stack:
    """One framework/server combination. ``serve(**options)`` builds the app wrapped by the
    agent, configured with the test's settings plus ``options``; ``bare()`` builds it without."""

    name: str
    kind: str  # "wsgi" or "asgi"

    def __init__(self, settings: dict[str, Any], recorder: Recorder) -> None:
        self.settings = settings
        self.recorder = recorder
        self.portal: Any = None
        self._exit = contextlib.ExitStack()
        if self.kind == "asgi":
            from anyio.from_thread import start_blocking_portal

            self.portal = self._exit.enter_context(start_blocking_portal("asyncio"))

    @property
    def item_route(self) -> str | None:
        return ITEM_ROUTES[self.name]

    def serve(self, **options: Any) -> Served:
        return self._served(*self.build({**self.settings, **options}))

    def bare(self) -> Served:
        return self._served(*self.build(None))

    def build(self, options: dict[str, Any] | None) -> tuple[Any, Any]:
        """(app, agent), the agent None when ``options`` is None (the bare app)."""
        raise NotImplementedError

    def _served(self, app: Any, agent: Any) -> Served:
        if self.kind == "wsgi":
            return WSGIServed(app, agent, self.recorder)
        return ASGIServed(app, agent, self.recorder, self.portal)

    def close(self) -> None:
        APP.gate.set()
        if self.portal is not None:
            self.portal.call(self.portal.stop, True)  # nothing may outlive the test
        self._exit.close()


class WSGIStack(Stack):
    name, kind = "wsgi", "wsgi"

    def build(self, options: dict[str, Any] | None) -> tuple[Any, Any]:
        from werkzeug.middleware.lint import LintMiddleware

        from moesif_agent.integrations.wsgi import MoesifWSGIMiddleware

        if options is None:
            return LintMiddleware(wsgi_app), None
        middleware = MoesifWSGIMiddleware(LintMiddleware(wsgi_app), options)
        return LintMiddleware(middleware), middleware.agent


def _environ_headers(environ: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-"), value
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            yield key.replace("_", "-"), value


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    APP.saw(method, path, _environ_headers(environ), body)
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return APP.produce()
    if path == "/error":
        fail()
    if method == "POST" and path == "/items":
        status, payload = "201 Created", body
    elif path == "/health":
        status, payload = "200 OK", json.dumps(HEALTH).encode()
    elif path.startswith("/items/"):
        status, payload = "200 OK", json.dumps(item(path[len("/items/") :])).encode()
    else:
        status, payload = "404 Not Found", b"{}"
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    start_response(status, headers)
    return [payload]


class FlaskStack(Stack):
    name, kind = "flask", "wsgi"

    def build(self, options: dict[str, Any] | None) -> tuple[Any, Any]:
        from moesif_agent.integrations.flask import Moesif

        app = flask_app()
        agent = None if options is None else Moesif(app, options).agent
        return app, agent


def flask_app() -> Any:
    import flask

    app = flask.Flask(__name__)

    def saw() -> None:
        request = flask.request
        APP.saw(request.method, request.path, request.headers.items(), request.get_data())

    @app.get("/items/<item_id>")
    def get_item(item_id: str) -> Any:
        saw()
        return item(item_id)

    @app.post("/items")
    def create() -> Any:
        saw()
        return flask.Response(flask.request.get_data(), 201, mimetype="application/json")

    @app.get("/stream")
    def stream() -> Any:
        saw()
        return flask.Response(APP.produce(), mimetype="text/plain")

    @app.get("/health")
    def health() -> Any:
        saw()
        return HEALTH

    @app.get("/error")
    def error() -> Any:
        saw()
        fail()

    return app


class ASGIStack(Stack):
    name, kind = "asgi", "asgi"

    def build(self, options: dict[str, Any] | None) -> tuple[Any, Any]:
        from moesif_agent.integrations.asgi import MoesifASGIMiddleware

        if options is None:
            return asgi_app, None
        middleware = MoesifASGIMiddleware(asgi_app, options)
        return middleware, middleware.agent


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    method, path = scope["method"], scope["path"]
    body = await read_body(receive)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    APP.saw(method, path, headers, body)
    if path == "/stream":
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"text/plain")]})
        async for chunk in APP.aproduce():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/error":
        fail()
    if method == "POST" and path == "/items":
        status, payload = 201, body
    elif path == "/health":
        status, payload = 200, json.dumps(HEALTH).encode()
    elif path.startswith("/items/"):
        status, payload = 200, json.dumps(item(path[len("/items/") :])).encode()
    else:
        status, payload = 404, b"{}"
    response_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": payload})


class StarletteStack(Stack):
    name, kind = "starlette", "asgi"

    def build(self, options: dict[str, Any] | None) -> tuple[Any, Any]:
        from moesif_agent.integrations.starlette import MoesifMiddleware

        app = starlette_app()
        if options is None:
            return app, None
        app.add_middleware(MoesifMiddleware, settings=options)
        app.middleware_stack = app.build_middleware_stack()
        node: Any = app.middleware_stack
        while not isinstance(node, MoesifMiddleware):
            node = node.app
        return app, node.agent


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request as StarletteRequest
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def saw(request: StarletteRequest) -> bytes:
        body = await request.body()
        APP.saw(request.method, request.url.path, request.headers.items(), body)
        return body

    async def get_item(request: StarletteRequest) -> Response:
        await saw(request)
        return JSONResponse(item(request.path_params["item_id"]))

    async def create(request: StarletteRequest) -> Response:
        body = await saw(request)
        return Response(body, status_code=201, media_type="application/json")

    async def stream(request: StarletteRequest) -> Response:
        await saw(request)
        return StreamingResponse(APP.aproduce(), media_type="text/plain")

    async def health(request: StarletteRequest) -> Response:
        await saw(request)
        return JSONResponse(HEALTH)

    async def error(request: StarletteRequest) -> Response:
        await saw(request)
        fail()

    return Starlette(
        routes=[
            Route("/items/{item_id}", get_item),
            Route("/items", create, methods=["POST"]),
            Route("/stream", stream),
            Route("/health", health),
            Route("/error", error),
        ]
    )


DJANGO_MOESIF = "moesif_agent.integrations.django.MoesifMiddleware"
DJANGO_PROJECT = {
    "ROOT_URLCONF": "tests.integrations.contract_django_urls",
    "ALLOWED_HOSTS": ["*"],
    "DEBUG": False,
    "DEBUG_PROPAGATE_EXCEPTIONS": False,
    "MIDDLEWARE": [],
    "MOESIF": None,
    "MOESIF_MIDDLEWARE": None,
}


def setup_django() -> None:
    """Settings are process-wide: configured once (as test_django.py does), then each stack
    applies its own with override_settings."""
    django = pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            SECRET_KEY="moesif-agent-tests", USE_TZ=True, DATABASES={}, INSTALLED_APPS=[]
        )
    django.setup()


class DjangoStack(Stack):
    """Django's own WSGIHandler or ASGIHandler, the agent's middleware first in MIDDLEWARE."""

    def __init__(self, settings: dict[str, Any], recorder: Recorder) -> None:
        setup_django()
        from django.test import override_settings

        super().__init__(settings, recorder)
        self._override_settings = override_settings
        project = override_settings(**DJANGO_PROJECT)
        project.enable()
        self._exit.callback(project.disable)
        self._served_with: Any = None  # the settings of the last serve(), active until close

    def build(self, options: dict[str, Any] | None) -> tuple[Any, Any]:
        from django.core.handlers.asgi import ASGIHandler
        from django.core.handlers.wsgi import WSGIHandler

        from moesif_agent.integrations.django import MoesifMiddleware

        handler = ASGIHandler if self.kind == "asgi" else WSGIHandler
        if options is None:  # the handler reads MIDDLEWARE once, when it is built
            with self._override_settings(MIDDLEWARE=[]):
                return handler(), None
        if self._served_with is not None:
            self._served_with.disable()
        self._served_with = self._override_settings(MIDDLEWARE=[DJANGO_MOESIF], MOESIF=options)
        self._served_with.enable()
        # A middleware built from the same settings shares the handler's agent.
        return handler(), MoesifMiddleware(_not_called).agent

    def close(self) -> None:
        if self._served_with is not None:
            self._served_with.disable()
            self._served_with = None
        super().close()


def _not_called(request: Any) -> Any:
    raise AssertionError("not called")


class DjangoWSGIStack(DjangoStack):
    name, kind = "django-wsgi", "wsgi"


class DjangoASGIStack(DjangoStack):
    name, kind = "django-asgi", "asgi"


_STACKS: dict[str, tuple[tuple[str, ...], type[Stack]]] = {
    "wsgi": (("werkzeug",), WSGIStack),
    "flask": (("flask",), FlaskStack),
    "asgi": (("anyio",), ASGIStack),
    "starlette": (("starlette",), StarletteStack),
    "django-wsgi": (("django",), DjangoWSGIStack),
    "django-asgi": (("django", "anyio"), DjangoASGIStack),
}


@pytest.fixture(name="stack", params=STACKS)
def stack_fixture(
    request: pytest.FixtureRequest, settings: dict[str, Any], recorder: Recorder
) -> Iterator[Stack]:
    """The contract app on each of the six stacks in turn."""
    modules, cls = _STACKS[request.param]
    for module in modules:
        pytest.importorskip(module)
    # The recorder writes a response's headers and body separately; with Nagle's algorithm
    # each answer then waits ~40 ms for a delayed ACK, which is most of this suite's time.
    recorder.server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
    APP.reset()
    built = cls(settings, recorder)
    try:
        yield built
    finally:
        built.close()
