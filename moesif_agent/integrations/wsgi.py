"""WSGI middleware: records every request/response pair without changing what the app sees.

The request body is teed as the app reads ``wsgi.input`` (never read ahead); the response is
teed as the server iterates it (never buffered); ``wsgi.file_wrapper`` responses pass through
untouched so servers can still use sendfile. The event is finished when the server closes
the response, or when the app fails.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .._agent import Agent
from .._capture import TRANSACTION_ID_HEADER, fill_from_environ, wsgi_text
from .._exchange import HEADERS_PAIRS, Body, Exchange
from .._guard import internal_error
from .._options import Options
from ._core import Flow, RequestCore, file_response_notes, run_sync
from ._reference import ReferenceMethods
from ._tee import InputTee, tee_chunks

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


__all__ = ["MoesifMiddleware", "MoesifWSGIMiddleware"]

ENVIRON_KEY = "moesif.exchange"


class MoesifWSGIMiddleware(ReferenceMethods):
    """Wrap a WSGI app so that every API call it serves is sent to the collector.

    ::

        from moesif_agent.integrations.wsgi import MoesifWSGIMiddleware

        app.wsgi_app = MoesifWSGIMiddleware(app.wsgi_app, {"APPLICATION_ID": "..."})

    ``options`` is an :class:`~moesif_agent.Options` or a settings mapping (the reference
    agents' UPPERCASE keys work); keyword arguments override it. Callbacks receive
    ``(app, environ)`` (``skip``, ``get_metadata``, ``get_session_token``) or
    ``(app, environ, response_headers)`` (``identify_user``, ``identify_company``).
    Middleware built with equal options share one agent: ``middleware.agent``.
    """

    def __init__(
        self,
        app: WSGIApplication,
        options: Options | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        self.app = app
        self.agent = Agent.shared(Options.coerce(options, **overrides))
        self.core = RequestCore(
            self.agent,
            asynchronous=False,
            callback_args=self._callback_args,
            identify_args=self._identify_args,
            skip_before_app=True,
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        agent = self.agent
        if not agent.enabled:
            return self.app(environ, start_response)
        try:
            call = self._start(environ, start_response)
        except Exception:
            internal_error("WSGI request capture")
            call = None
        if call is None:
            return self.app(environ, start_response)
        core = self.core
        policy = agent.policy
        if policy.trivial:
            plan = None
            if core.echo_txid:
                call.extra_headers = [(TRANSACTION_ID_HEADER, call.ex.transaction_id)]
        else:
            body = None
            try:
                size = core.body_ahead(
                    policy, environ.get("CONTENT_TYPE", ""), environ.get("CONTENT_LENGTH")
                )
                if size:
                    body = _read_ahead(environ, size)
            except Exception:
                internal_error("WSGI request body")
            plan = run_sync(core.begin(call, policy, body))
            if plan is not None and plan.block is not None:
                return self._blocked(call, plan.block.body, start_response)
            call.extra_headers = core.added_headers(call, plan)
        if core.log_body if plan is None else core.capture(plan):
            ex = call.ex
            tee = ex.request_body = Body(core.max_body)
            call.body = ex.response_body = Body(core.max_body)
            stream = environ.get("wsgi.input")
            if stream is not None:
                environ["wsgi.input"] = InputTee(stream, tee)
        try:
            result = self.app(environ, call.start_response)
        except BaseException as exc:
            call.failed(exc)
            raise
        return call.wrap(result)

    def _start(self, environ: WSGIEnvironment, start_response: StartResponse) -> _Call | None:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        if not path.isascii():
            path = wsgi_text(path)
        core = self.core
        if core.skips_any and core.skipped(method, path):
            return None
        skip = core.callbacks.skip
        if skip is not None and core.skip_asked(skip(self.app, environ)):
            return None
        query = environ.get("QUERY_STRING", "")
        if not query.isascii():
            query = wsgi_text(query)
        ex = Exchange(method, path or "/", query, time.time())
        scheme = environ.get("wsgi.url_scheme", "http")
        fill_from_environ(ex, environ, scheme, core.echo_txid, core.forwarding.trusts)
        environ[ENVIRON_KEY] = ex
        return _Call(core, ex, environ, start_response)

    def _callback_args(self, flow: Flow) -> tuple[Any, ...]:
        return self.app, flow.request

    def _identify_args(self, flow: Flow) -> tuple[Any, ...]:
        if flow.response is None:  # before the app: no response headers yet
            return self.app, flow.request
        return self.app, flow.request, dict(flow.ex.response_headers)

    def _blocked(self, call: _Call, body: bytes, start_response: StartResponse) -> Iterable[bytes]:
        ex = call.ex
        start_response(_status_line(ex.status or 200), list(ex.response_headers))
        ex.response_time = time.time()
        call.response = ex.response_headers
        self.core.finish_now(call)
        return [body]


def _read_ahead(environ: WSGIEnvironment, size: int) -> bytes | None:
    """Read ``size`` body bytes for governance and replay them to the app unchanged."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return None
    data: bytes = stream.read(size)
    environ["wsgi.input"] = io.BytesIO(data)
    return data


class _Call(Flow):
    """One request: ``start_response`` for the app, then the response iterable for the
    server (iterated chunk by chunk and copied, never buffered). The call is finished at the
    last chunk, on ``close()``, or when the app fails."""

    __slots__ = ("_start_response", "extra_headers", "result")

    def __init__(
        self, core: RequestCore, ex: Exchange, environ: WSGIEnvironment, start: StartResponse
    ) -> None:
        super().__init__(core, ex, environ)
        self._start_response = start
        self.extra_headers: list[tuple[str, str]] = []
        self.result: Iterable[bytes] = ()

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: tuple[type[BaseException], BaseException, TracebackType]
        | tuple[None, None, None]
        | None = None,
    ) -> Callable[[bytes], object]:
        ex = self.ex
        try:
            ex.status = int(status[:3])
            extra = self.extra_headers
            if extra:
                headers = headers + extra  # a new list: the app's list is not mutated
                ex.response_headers = headers
            else:
                ex.response_headers = list(headers)
            ex.response_header_style = HEADERS_PAIRS
            self.response = ex.response_headers
        except Exception:
            internal_error("WSGI start_response")
        write = self._start_response(status, headers, exc_info)
        if self.body is not None:
            return _TeeWrite(write, self.body)
        return write

    def wrap(self, result: Iterable[bytes]) -> Iterable[bytes]:
        file_wrapper = self.request.get("wsgi.file_wrapper")
        if file_wrapper is not None and isinstance(file_wrapper, type):
            if isinstance(result, file_wrapper):
                # Passed through untouched so the server can sendfile; recorded without its
                # body when the iterable is handed over.
                self.ex.notes = file_response_notes()
                self.done()
                return result
        self.result = result
        return self

    def __iter__(self) -> Iterator[bytes]:
        return tee_chunks(self.result, self)

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self.failed(exc)
            raise
        finally:
            self.closed()


class _TeeWrite:
    """The legacy ``write()`` callable, teed like the response iterable."""

    __slots__ = ("body", "write")

    def __init__(self, write: Callable[[bytes], object], body: Body) -> None:
        self.write = write
        self.body = body

    def __call__(self, data: bytes) -> object:
        self.body.add(data)
        return self.write(data)


def _status_line(status: int) -> str:
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"{status} {phrase}"


MoesifMiddleware = MoesifWSGIMiddleware
