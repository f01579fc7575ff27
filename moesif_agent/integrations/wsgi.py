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
from .._capture import fill_from_environ, wsgi_text
from .._exchange import HEADERS_PAIRS, Body
from .._guard import internal_error
from .._options import Options
from ._core import Flow, RequestCore, new_exchange, run_sync
from ._reference import ReferenceMethods
from ._tee import InputTee, ResponseEnd, tee_chunks

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
        core = self.core
        try:
            flow = self._start(environ)
        except Exception:
            internal_error("WSGI request capture")
            flow = None
        if flow is None:
            return self.app(environ, start_response)
        plan = None
        policy = agent.policy
        if not policy.trivial:
            body = None
            try:
                size = core.body_ahead(
                    policy, environ.get("CONTENT_TYPE", ""), environ.get("CONTENT_LENGTH")
                )
                if size:
                    body = _read_ahead(environ, size)
            except Exception:
                internal_error("WSGI request body")
            plan = run_sync(core.begin(flow, policy, body))
            if plan is not None and plan.block is not None:
                return self._blocked(flow, plan.block.body, start_response)
        capture = core.capture(plan)
        if capture:
            tee = flow.ex.request_body = Body(core.max_body)
            stream = environ.get("wsgi.input")
            if stream is not None:
                environ["wsgi.input"] = InputTee(stream, tee)
        response = _Response(core, flow, start_response, core.added_headers(flow, plan), capture)
        try:
            result = self.app(environ, response.start_response)
        except BaseException as exc:
            response.failed(exc)
            raise
        return response.wrap(result)

    def _start(self, environ: WSGIEnvironment) -> Flow | None:
        method = environ.get("REQUEST_METHOD", "GET")
        path = wsgi_text(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
        core = self.core
        if core.skipped(method, path):
            return None
        skip = core.callbacks.skip
        if skip is not None and core.skip_asked(skip(self.app, environ)):
            return None
        ex = new_exchange(method, path, wsgi_text(environ.get("QUERY_STRING", "")))
        scheme = environ.get("wsgi.url_scheme", "http")
        fill_from_environ(ex, environ, scheme, core.echo_txid, core.forwarding.trusts)
        environ[ENVIRON_KEY] = ex
        return Flow(ex, environ)

    def _callback_args(self, flow: Flow) -> tuple[Any, ...]:
        return self.app, flow.request

    def _identify_args(self, flow: Flow) -> tuple[Any, ...]:
        if flow.response is None:  # before the app: no response headers yet
            return self.app, flow.request
        return self.app, flow.request, dict(flow.ex.response_headers)

    def _blocked(self, flow: Flow, body: bytes, start_response: StartResponse) -> Iterable[bytes]:
        ex = flow.ex
        start_response(_status_line(ex.status or 200), list(ex.response_headers))
        ex.response_time = time.time()
        flow.response = ex.response_headers
        run_sync(self.core.finish(flow))
        return [body]


def _read_ahead(environ: WSGIEnvironment, size: int) -> bytes | None:
    """Read ``size`` body bytes for governance and replay them to the app unchanged."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return None
    data: bytes = stream.read(size)
    environ["wsgi.input"] = io.BytesIO(data)
    return data


class _Response:
    """start_response and the response iterable for one request."""

    __slots__ = ("_start_response", "capture", "core", "extra_headers", "flow")

    def __init__(
        self,
        core: RequestCore,
        flow: Flow,
        start_response: StartResponse,
        extra_headers: list[tuple[str, str]],
        capture: bool,
    ) -> None:
        self.core = core
        self.flow = flow
        self._start_response = start_response
        self.extra_headers = extra_headers
        self.capture = capture

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: tuple[type[BaseException], BaseException, TracebackType]
        | tuple[None, None, None]
        | None = None,
    ) -> Callable[[bytes], object]:
        ex = self.flow.ex
        try:
            ex.status = int(status[:3])
            ex.response_headers = list(headers)
            ex.response_header_style = HEADERS_PAIRS
            extra = self.extra_headers
            if extra:
                headers = headers + extra  # a new list: the app's list is not mutated
                ex.response_headers += extra
            self.flow.response = ex.response_headers
        except Exception:
            internal_error("WSGI start_response")
        write = self._start_response(status, headers, exc_info)
        if self.capture:
            return _TeeWrite(write, self)
        return write

    def wrap(self, result: Iterable[bytes]) -> Iterable[bytes]:
        file_wrapper = self.flow.request.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            # Passed through untouched so the server can sendfile; recorded without its body.
            self.flow.ex.notes = {"response_body": {"omitted": "file response"}}
            self.done()
            return result
        return _ResponseTee(result, self)

    def failed(self, exc: BaseException) -> None:
        """The app raised before returning its iterable."""
        self.core.failed(self.flow, exc)
        self.done()

    def done(self) -> None:
        """Finish the exchange once: at the last chunk, on close(), or on failure."""
        run_sync(self.core.finish(self.flow))


class _TeeWrite:
    """The legacy ``write()`` callable, teed like the response iterable."""

    __slots__ = ("response", "write")

    def __init__(self, write: Callable[[bytes], object], response: _Response) -> None:
        self.write = write
        self.response = response

    def __call__(self, data: bytes) -> object:
        ex = self.response.flow.ex
        if ex.response_body is None:
            ex.response_body = Body(self.response.core.max_body)
        ex.response_body.add(data)
        return self.write(data)


class _ResponseTee:
    """The app's iterable, passed through chunk by chunk and copied up to the body cap; the
    call is finished at its last chunk, or when the server closes it."""

    def __init__(self, result: Iterable[bytes], response: _Response) -> None:
        self._result = result
        self._end = end = ResponseEnd(response.core, response.flow, response.done)
        if response.capture:
            ex = response.flow.ex
            end.body = ex.response_body = ex.response_body or Body(response.core.max_body)

    def __iter__(self) -> Iterator[bytes]:
        return tee_chunks(self._result, self._end)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self._end.failed(exc)
            raise
        finally:
            self._end.closed()


def _status_line(status: int) -> str:
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"{status} {phrase}"


MoesifMiddleware = MoesifWSGIMiddleware
