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
from .._capture import assign_transaction_id, header_value, new_transaction_id
from .._exchange import HEADERS_ASGI, Body, Exchange
from .._guard import internal_error
from .._options import Options
from ._core import Flow, RequestCore, file_response_notes, run_async
from ._lifespan import FlushOnShutdown, lifespan
from ._reference import ReferenceMethods

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._governance import Plan

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


class MoesifASGIMiddleware(ReferenceMethods):
    """Wrap an ASGI app so that every API call it serves is sent to the collector.

    ::

        from moesif_agent.integrations.asgi import MoesifASGIMiddleware

        app = MoesifASGIMiddleware(app, {"APPLICATION_ID": "..."})

    ``options`` (or ``settings=``, the reference agent's keyword) is an
    :class:`~moesif_agent.Options` or a settings mapping. Callbacks receive
    ``(scope, response)`` where ``response`` is a :class:`ResponseInfo`
    (``None`` when called before the app runs); they may be ``async`` and must be cheap, since
    they run on the event loop. With Starlette or FastAPI use
    ``moesif_agent.integrations.starlette.MoesifStarletteMiddleware``, whose callbacks get
    Starlette's ``Request`` and ``Response``. Lifespan shutdown flushes the agent.
    """

    def __init__(
        self,
        app: ASGIApp,
        options: Options | Mapping[str, Any] | None = None,
        *,
        settings: Options | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        if options is not None and settings is not None:
            raise TypeError("pass either options or settings (the same thing), not both")
        self.app = app
        self.agent = Agent.shared(Options.coerce(options or settings, **overrides))
        self.core = RequestCore(self.agent, asynchronous=True, callback_args=self.callback_args)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" or not self.agent.enabled:
            if kind == "lifespan":
                await lifespan(self.app, scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        try:
            cycle = self._start(scope)
        except Exception:
            internal_error("ASGI request capture")
            cycle = None
        if cycle is None:
            await self.app(scope, receive, send)
            return
        await cycle.run(receive, send)

    def _start(self, scope: Scope) -> _Cycle | None:
        method = scope.get("method", "GET")
        root_path = scope.get("root_path", "")
        path = scope.get("path", "/")
        if root_path and not path.startswith(root_path):
            path = root_path + path
        core = self.core
        if core.skips_any and core.skipped(method, path):
            return None
        query = scope.get("query_string", b"")
        ex = Exchange(method, path, query.decode("latin-1") if query else "", time.time())
        scheme = ex.scheme = scope.get("scheme", "http")
        headers = scope.get("headers") or []
        host = None
        incoming = None
        for name, value in headers:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == _TXID:
                incoming = value.decode("latin-1")
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
        peer = ex.remote_addr = client[0] if client else None  # None: a unix socket
        app_scope = dict(scope)  # the app gets a copy; the router's additions land in it too
        if incoming is None:
            ex.transaction_id = txid = new_transaction_id()
            if core.echo_txid:  # the app sees the id the call is recorded under
                headers = app_scope["headers"] = [*headers, (_TXID, txid.encode("latin-1"))]
        elif assign_transaction_id(ex, incoming, core.forwarding.trusts(peer)) and core.echo_txid:
            # The app sees the id the call is recorded under, in place of the client's.
            txid_header = (_TXID, ex.transaction_id.encode("latin-1"))
            headers = [h for h in headers if h[0] != _TXID]
            headers.append(txid_header)
            app_scope["headers"] = headers
        ex.request_headers = headers
        ex.request_header_style = HEADERS_ASGI
        app_scope[SCOPE_KEY] = ex
        return _Cycle(self, ex, app_scope)

    # What the Starlette middleware changes --------------------------------------------------------

    def callback_args(self, flow: Flow) -> tuple[Any, ...]:
        """(request, response) as callbacks receive them."""
        assert isinstance(flow, _Cycle)
        response = None
        if flow.started and flow.ex.status is not None:
            response = ResponseInfo(flow.ex.status, flow.ex.response_headers)
        return flow.request, response

    def route_of(self, scope: Scope, original_root_path: str) -> str | None:
        """The route template that served the request, when the framework tells."""
        route = scope.get("route")
        if route is None and "endpoint" in scope:  # Starlette before 1.7 names the endpoint
            endpoint = scope["endpoint"]
            routes = getattr(scope.get("router"), "routes", ())
            route = next((r for r in routes if getattr(r, "endpoint", None) is endpoint), None)
        template = getattr(route, "path", None) or getattr(route, "path_format", None)
        if not isinstance(template, str):
            return None
        root_path = scope.get("root_path", "")
        prefix = (
            root_path[len(original_root_path) :] if root_path.startswith(original_root_path) else ""
        )
        return prefix + template


class _Cycle(Flow):
    """One HTTP request/response cycle: the wrapped receive/send around the core's steps."""

    __slots__ = (
        "_receive",
        "_send",
        "capture",
        "extra_headers",
        "middleware",
        "original_root_path",
    )

    def __init__(self, middleware: MoesifASGIMiddleware, ex: Exchange, scope: Scope) -> None:
        super().__init__(middleware.core, ex, scope)
        self.middleware = middleware
        self.original_root_path = scope.get("root_path", "")
        self.capture = self.core.log_body
        self.extra_headers: list[tuple[bytes, bytes]] = []

    async def run(self, receive: Receive, send: Send) -> None:
        core = self.core
        ex = self.ex
        plan: Plan | None = None
        policy = core.agent.policy
        if not policy.trivial:
            body = None
            try:
                headers = ex.request_headers
                size = core.body_ahead(
                    policy,
                    header_value(HEADERS_ASGI, headers, "content-type"),
                    header_value(HEADERS_ASGI, headers, "content-length"),
                )
                if size:
                    receive, body = await _read_ahead(receive)
            except Exception:
                internal_error("ASGI request body")
            plan = await run_async(core.begin(self, policy, body))
            if plan is not None and plan.block is not None:
                await self._send_block(plan.block.body, send)
                return
            self.capture = core.capture(plan)
            self.extra_headers = _encode_headers(core.added_headers(self, plan))
        elif core.echo_txid:
            self.extra_headers = [(_TXID, ex.transaction_id.encode("latin-1"))]
        if self.capture:
            ex.request_body = Body(core.max_body)
            ex.response_body = Body(core.max_body)
        try:
            self._receive = receive
            self._send = send
            await self.middleware.app(self.request, self.receive, self.send)
        except Exception as exc:
            if not self.finished:
                core.failed(self, exc, response_started=self.started)
                await self._finish(aborted=self.started)
            raise
        except BaseException as exc:  # cancelled: awaiting callbacks now could raise again
            if not self.finished:
                core.failed(self, exc, response_started=self.started)
                core.record(self)
            raise
        if not self.finished:
            await self._finish(aborted=self.started)

    async def receive(self) -> Message:
        """The app's ``receive``: request body chunks are copied as the app takes them."""
        message = await self._receive()
        try:
            kind = message["type"]
            if kind == "http.request":
                body = self.ex.request_body
                if body is not None:
                    chunk = message.get("body", b"")
                    if chunk:
                        body.add(chunk)
            elif kind == "http.disconnect" and not self.finished:
                ex = self.ex
                ex.notes = {**(ex.notes or {}), "aborted": "the client disconnected"}
        except Exception:
            internal_error("ASGI receive")
        return message

    async def send(self, message: Message) -> None:
        """The app's ``send``: the agent's headers added, response body chunks copied."""
        ex = self.ex
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
                ex.notes = file_response_notes()
                final = True
        except Exception:
            internal_error("ASGI send")
        await self._send(message)
        if final and not self.finished:
            ex.response_time = time.time()
            await self._finish(aborted=False)

    async def _send_block(self, body: bytes, send: Send) -> None:
        ex = self.ex
        headers = ex.response_headers = _encode_headers(ex.response_headers)
        ex.response_header_style = HEADERS_ASGI
        self.started = True
        await send({"type": "http.response.start", "status": ex.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        ex.response_time = time.time()
        await self._finish(aborted=False)

    async def _finish(self, aborted: bool) -> None:
        ex = self.ex
        if aborted and not (ex.notes and "aborted" in ex.notes):
            ex.notes = {**(ex.notes or {}), "aborted": "the response was not completed"}
        try:
            ex.route = self.middleware.route_of(self.request, self.original_root_path)
        except Exception:
            internal_error("ASGI route")
        core = self.core
        if core.plain:
            core.finish_now(self)
        else:
            await run_async(core.finish(self))


def _encode_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Header pairs as ASGI wants them: bytes, names in lower case."""
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _read_ahead(receive: Receive) -> tuple[Receive, bytes]:
    """Read the whole body before the app (governance rules with body conditions); the app
    then receives the same messages."""
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

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return replay, b"".join(chunks)


MoesifMiddleware = MoesifASGIMiddleware
