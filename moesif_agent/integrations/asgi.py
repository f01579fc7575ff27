"""ASGI middleware: pure ASGI (wraps ``receive`` and ``send``), HTTP scopes only.

Bodies are copied from the messages the app itself receives and sends: nothing is read ahead,
nothing is buffered, streaming responses flow message by message. The event is finished on
the last body message, or when the app returns, fails, is cancelled or the client goes away.
Nothing here blocks the event loop: the event is handed to the agent's queue as is, and the
worker thread does the encoding, masking and network I/O.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from .._agent import Agent
from .._callbacks import AdapterSettings, wrap_async
from .._capture import (
    new_transaction_id,
    user_from_credentials,
    valid_transaction_id,
)
from .._exchange import HEADERS_ASGI, Body, Exchange
from .._guard import internal_error
from .._options import Options

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._policy import Plan

__all__ = ["FlushOnShutdown", "MoesifASGIMiddleware", "MoesifMiddleware", "ResponseInfo"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_KEY = "moesif.exchange"
_TXID = b"x-moesif-transaction-id"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class ResponseInfo:
    """What plain-ASGI callbacks get as ``response``: status and raw headers (or None before
    the app ran)."""

    __slots__ = ("headers", "status_code")

    def __init__(self, status_code: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = status_code
        self.headers = headers


class MoesifASGIMiddleware(AdapterSettings):
    """Wrap an ASGI app so that every API call it serves is sent to the collector.

    ::

        from moesif_agent.integrations.asgi import MoesifASGIMiddleware

        app = MoesifASGIMiddleware(app, {"APPLICATION_ID": "..."})

    Callbacks receive ``(scope, response)`` where ``response`` is a :class:`ResponseInfo`
    (``None`` when called before the app runs); they may be ``async`` and must be cheap, since
    they run on the event loop. With Starlette or FastAPI use
    ``moesif_agent.integrations.starlette.MoesifMiddleware``, whose callbacks get Starlette's
    ``Request`` and ``Response``. Lifespan shutdown flushes the agent.
    """

    def __init__(
        self,
        app: ASGIApp,
        options: Options | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        self.app = app
        self.agent = Agent.shared(Options.coerce(options, **overrides))
        o = self.agent.options
        self._read_settings(o, wrap_async)
        self._auth_header_bytes = tuple(n.encode("latin-1") for n in self._auth_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" or not self.agent.enabled:
            if kind == "lifespan":
                await _lifespan(self.app, scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        try:
            exchange = self._start(scope)
        except Exception:
            internal_error("ASGI request capture")
            exchange = None
        if exchange is None:
            await self.app(scope, receive, send)
            return
        ex, scope = exchange
        await _Cycle(self, ex, scope).run(receive, send)

    def _start(self, scope: Scope) -> tuple[Exchange, Scope] | None:
        method = scope.get("method", "GET")
        root_path = scope.get("root_path", "")
        path = scope.get("path", "/")
        if root_path and not path.startswith(root_path):
            path = root_path + path
        if self.agent.skips(method, path):
            return None
        ex = Exchange()
        ex.request_time = time.time()
        ex.method = method
        ex.path = path
        ex.query = scope.get("query_string", b"").decode("latin-1")
        scheme = ex.scheme = scope.get("scheme", "http")
        headers = scope.get("headers") or []
        host = None
        txid = None
        for name, value in headers:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == _TXID:
                txid = valid_transaction_id(value.decode("latin-1"))
        if host is None:
            server = scope.get("server")
            if server:
                host, port = server[0], server[1]
                if port is not None and port != _DEFAULT_PORTS.get(scheme):
                    host = f"{host}:{port}"
            else:
                host = "localhost"
        ex.host = host
        client = scope.get("client")
        ex.remote_addr = client[0] if client else None
        scope = dict(scope)  # the app gets a copy; the router's additions land in it too
        if txid is None:
            txid = new_transaction_id()
            if self._echo_txid:  # the app sees the id it will be recorded under
                headers = scope["headers"] = [*headers, (_TXID, txid.encode("latin-1"))]
        ex.transaction_id = txid
        ex.request_headers = headers
        ex.request_header_style = HEADERS_ASGI
        scope[SCOPE_KEY] = ex
        return ex, scope

    # Hooks the Starlette subclass overrides ----------------------------------------------------

    def callback_args(self, cycle: _Cycle) -> tuple[Any, Any]:
        """(request, response) as callbacks receive them."""
        response = None
        if cycle.ex.status is not None and cycle.started:
            response = ResponseInfo(cycle.ex.status, cycle.ex.response_headers)
        return cycle.scope, response

    def route_of(self, scope: Scope, original_root_path: str) -> str | None:
        """The route template that served the request, when the framework tells."""
        route = scope.get("route")
        template = getattr(route, "path", None) or getattr(route, "path_format", None)
        if not isinstance(template, str):
            return None
        root_path = scope.get("root_path", "")
        prefix = (
            root_path[len(original_root_path) :] if root_path.startswith(original_root_path) else ""
        )
        return prefix + template

    async def identify(self, cycle: _Cycle, before_app: bool) -> None:
        ex = cycle.ex
        if self._identify_user is None and self._identify_company is None and not before_app:
            return
        request, response = self.callback_args(cycle)
        if self._identify_user is not None:
            ex.user_id = await self._identify_user(request, response)
        if ex.user_id is None and before_app:
            for name, value in ex.request_headers:
                if name in self._auth_header_bytes:
                    ex.user_id = user_from_credentials(value.decode("latin-1"), self._auth_field)
                    if ex.user_id:
                        break
        if self._identify_company is not None:
            ex.company_id = await self._identify_company(request, response)


class _Cycle:
    """One HTTP request/response cycle: the wrapped receive/send and the event's lifecycle."""

    __slots__ = (
        "body_ahead",
        "capture",
        "ex",
        "extra_headers",
        "finished",
        "identified",
        "middleware",
        "original_root_path",
        "scope",
        "started",
    )

    def __init__(self, middleware: MoesifASGIMiddleware, ex: Exchange, scope: Scope) -> None:
        self.middleware = middleware
        self.ex = ex
        self.scope = scope
        self.original_root_path = scope.get("root_path", "")
        self.capture = middleware._log_body
        self.extra_headers: list[tuple[bytes, bytes]] = []
        self.started = False
        self.finished = False
        self.identified = False
        self.body_ahead: bytes | None = None

    async def run(self, receive: Receive, send: Send) -> None:
        middleware = self.middleware
        ex = self.ex
        plan: Plan | None = None
        try:
            if middleware.agent.policy.needs_body:
                receive = await self._read_ahead(receive)
            plan = await self._begin()
        except Exception:
            internal_error("governance")
        if plan is not None:
            if plan.block is not None:
                await self._send_block(plan, send)
                return
            self.capture = self.capture and plan.capture
            self.extra_headers = [
                (k.encode("latin-1"), v.encode("latin-1")) for k, v in plan.headers
            ]
        if middleware._echo_txid:
            self.extra_headers.append((_TXID, ex.transaction_id.encode("latin-1")))
        if self.capture:
            ex.request_body = Body(middleware._max_body)
            ex.response_body = Body(middleware._max_body)
        try:
            await middleware.app(self.scope, self._receive(receive), self._send(send))
        except Exception as exc:
            if not self.finished:
                self._failed(exc)
                await self._finish(aborted=self.started)
            raise
        except BaseException as exc:  # cancelled: awaiting callbacks now could raise again
            if not self.finished:
                self._failed(exc)
                self._record()
            raise
        if not self.finished:
            await self._finish(aborted=self.started)

    def _failed(self, exc: BaseException) -> None:
        ex = self.ex
        ex.error = type(exc).__name__
        if not self.started:
            ex.status = 500

    async def _begin(self) -> Plan | None:
        agent = self.middleware.agent
        if agent.policy.needs_identity:
            await self.middleware.identify(self, before_app=True)
            self.identified = True
        return agent.begin(self.ex, None, self.body_ahead)

    async def _read_ahead(self, receive: Receive) -> Receive:
        """Read the body before the app, for governance rules with body conditions: only a
        JSON body with a known length within max_body_size. The app gets the same messages."""
        ex = self.ex
        content_type = length = None
        for name, value in ex.request_headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() else None
        if not content_type or b"json" not in content_type:
            return receive
        if length is None or not 0 < length <= self.middleware._max_body:
            return receive
        messages = []
        chunks = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.body_ahead = b"".join(chunks)

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        return replay

    def _receive(self, receive: Receive) -> Receive:
        ex = self.ex

        async def receive_wrapper() -> Message:
            message = await receive()
            try:
                kind = message["type"]
                if kind == "http.request":
                    body = ex.request_body
                    if body is not None:
                        chunk = message.get("body", b"")
                        if chunk:
                            body.add(chunk)
                elif kind == "http.disconnect" and not self.finished:
                    ex.notes = {**(ex.notes or {}), "aborted": "the client disconnected"}
            except Exception:
                internal_error("ASGI receive")
            return message

        return receive_wrapper

    def _send(self, send: Send) -> Send:
        ex = self.ex

        async def send_wrapper(message: Message) -> None:
            final = False
            try:
                kind = message["type"]
                if kind == "http.response.start":
                    self.started = True
                    headers = list(message.get("headers") or [])
                    ex.status = message["status"]
                    if self.extra_headers:
                        headers += self.extra_headers
                        message = {**message, "headers": headers}
                    ex.response_headers = headers
                    ex.response_header_style = HEADERS_ASGI
                elif kind == "http.response.body":
                    body = ex.response_body
                    chunk = message.get("body", b"")
                    if body is not None and chunk:
                        body.add(chunk)
                    final = not message.get("more_body", False)
                elif kind == "http.response.pathsend":
                    ex.notes = {"response_body": {"omitted": "file response"}}
                    final = True
            except Exception:
                internal_error("ASGI send")
            await send(message)
            if final and not self.finished:
                ex.response_time = time.time()
                await self._finish(aborted=False)

        return send_wrapper

    async def _send_block(self, plan: Plan, send: Send) -> None:
        block = plan.block
        assert block is not None
        ex = self.ex
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in block.headers]
        if self.middleware._echo_txid:
            headers.append((_TXID, ex.transaction_id.encode("latin-1")))
        ex.status = block.status
        ex.response_headers = headers
        ex.response_header_style = HEADERS_ASGI
        ex.blocked_by = block.rule_id
        if self.middleware._log_body:
            ex.response_body = Body(self.middleware._max_body)
            ex.response_body.add(block.body)
        self.started = True
        await send({"type": "http.response.start", "status": block.status, "headers": headers})
        await send({"type": "http.response.body", "body": block.body})
        ex.response_time = time.time()
        await self._finish(aborted=False)

    async def _finish(self, aborted: bool) -> None:
        if self.finished:
            return
        self.finished = True
        middleware = self.middleware
        ex = self.ex
        try:
            if aborted and not (ex.notes and "aborted" in ex.notes):
                ex.notes = {**(ex.notes or {}), "aborted": "the response was not completed"}
            ex.route = middleware.route_of(self.scope, self.original_root_path)
            if middleware._skip is not None:
                request, response = middleware.callback_args(self)
                if await middleware._skip(request, response):
                    middleware.agent.skipped()
                    return
            if not self.identified:
                await middleware.identify(self, before_app=False)
            if middleware._get_session_token is not None or middleware._get_metadata is not None:
                request, response = middleware.callback_args(self)
                if middleware._get_session_token is not None:
                    ex.session_token = await middleware._get_session_token(request, response)
                if middleware._get_metadata is not None:
                    ex.metadata = await middleware._get_metadata(request, response)
        except Exception:
            internal_error("ASGI finish")
        self._record()

    def _record(self) -> None:
        self.finished = True
        ex = self.ex
        if ex.response_time is None:
            ex.response_time = time.time()
        if ex.status is None:
            ex.status = 500 if ex.error else 200
        self.middleware.agent.record(ex)


class FlushOnShutdown:
    """Wrap an ASGI app so that the server's lifespan shutdown delivers the agents' queued
    events, even when the app itself does not speak the lifespan protocol.

    uvicorn ends a SIGTERM shutdown by re-raising the signal, which kills the process before
    ``atexit`` hooks (the agent's usual exit flush) can run; the lifespan shutdown is the
    last moment to deliver. Django's ASGI handler refuses lifespan, so under uvicorn wrap it::

        application = FlushOnShutdown(get_asgi_application())

    (``MoesifASGIMiddleware`` and the Starlette middleware do this by themselves.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(self.app, scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _lifespan(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Pass lifespan to the app, flushing every agent before shutdown completes. An app that
    refuses lifespan outright (raises before saying anything) is answered for."""
    spoke = False

    async def lifespan_send(message: Message) -> None:
        nonlocal spoke
        spoke = True
        if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            await _to_thread(flush_all)
        await send(message)

    try:
        await app(scope, receive, lifespan_send)
        return
    except Exception:
        if spoke:  # a real startup or shutdown failure of the app: not ours to hide
            raise
    # The app does not do lifespan (Django's handler raises at once): keep the protocol
    # going so that the server still tells us when it shuts down.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await _to_thread(flush_all)
            await send({"type": "lifespan.shutdown.complete"})
            return


def flush_all() -> None:
    """Deliver what every agent in this process has queued, each within its shutdown_timeout."""
    from .._agent import all_agents

    for agent in all_agents():
        agent.flush(agent.options.shutdown_timeout)


async def _to_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking call off the event loop (asyncio; elsewhere, inline)."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return function(*args)
    return await loop.run_in_executor(None, function, *args)


MoesifMiddleware = MoesifASGIMiddleware
