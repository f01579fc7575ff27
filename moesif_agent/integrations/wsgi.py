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
from .._callbacks import AdapterSettings, wrap
from .._capture import (
    TRANSACTION_ID_HEADER,
    fill_from_environ,
    header_value,
    user_from_credentials,
)
from .._exchange import HEADERS_PAIRS, HEADERS_WSGI, Body, Exchange
from .._guard import internal_error
from .._options import Options

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .._policy import Plan

__all__ = ["MoesifMiddleware", "MoesifWSGIMiddleware"]

ENVIRON_KEY = "moesif.exchange"


class MoesifWSGIMiddleware(AdapterSettings):
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
        o = self.agent.options
        self._read_settings(o, wrap)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        agent = self.agent
        if not agent.enabled:
            return self.app(environ, start_response)
        try:
            ex = self._start(environ)
        except Exception:
            internal_error("WSGI request capture")
            ex = None
        if ex is None:
            return self.app(environ, start_response)
        identify = _Identify(self, ex, environ)
        try:
            ahead = self._read_ahead(environ) if agent.policy.needs_body else None
            plan = agent.begin(ex, identify, ahead)
        except Exception:
            internal_error("governance")
            plan = None
        if plan is not None and plan.block is not None:
            return self._blocked(ex, plan, environ, start_response)
        capture = self._log_body and (plan is None or plan.capture)
        if capture:
            body = ex.request_body = Body(self._max_body)
            stream = environ.get("wsgi.input")
            if stream is not None:
                environ["wsgi.input"] = _InputTee(stream, body)
        response = _Response(self, ex, environ, start_response, plan, capture, identify.called)
        try:
            result = self.app(environ, response.start_response)
        except BaseException as exc:
            response.failed(exc)
            raise
        return response.wrap(result)

    # Request side ------------------------------------------------------------------------------

    def _start(self, environ: WSGIEnvironment) -> Exchange | None:
        method = environ.get("REQUEST_METHOD", "GET")
        script_name = environ.get("SCRIPT_NAME", "")
        path = script_name + environ.get("PATH_INFO", "")
        if self.agent.skips(method, path):
            return None
        if self._skip is not None and self._skip(self.app, environ):
            self.agent.skipped()
            return None
        ex = Exchange()
        ex.request_time = time.time()
        ex.method = method
        ex.path = path or "/"
        ex.query = environ.get("QUERY_STRING", "")
        fill_from_environ(ex, environ, environ.get("wsgi.url_scheme", "http"), self._echo_txid)
        environ[ENVIRON_KEY] = ex
        return ex

    def _read_ahead(self, environ: WSGIEnvironment) -> bytes | None:
        """The request body, for governance rules with body conditions: read only when it is
        JSON with a known length within max_body_size, and replayed to the app unchanged."""
        if "json" not in environ.get("CONTENT_TYPE", ""):
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return None
        stream = environ.get("wsgi.input")
        if stream is None or not 0 < length <= self._max_body:
            return None
        data: bytes = stream.read(length)
        environ["wsgi.input"] = io.BytesIO(data)
        return data

    def identify(
        self, ex: Exchange, environ: WSGIEnvironment, response_headers: list[Any] | None
    ) -> None:
        """Fill user and company ids, once per request (callbacks, then credentials)."""
        args: tuple[Any, ...] = (self.app, environ)
        if response_headers is not None:
            args += (dict(response_headers),)
        if self._identify_user is not None:
            ex.user_id = self._identify_user(*args)
        if ex.user_id is None and response_headers is None:
            # Governance needs the user now; otherwise the worker reads the credentials.
            for name in self._auth_headers:
                value = header_value(HEADERS_WSGI, ex.request_headers, name)
                if value:
                    ex.user_id = user_from_credentials(value, self._auth_field)
                    if ex.user_id:
                        break
        if self._identify_company is not None:
            ex.company_id = self._identify_company(*args)

    def finish(self, ex: Exchange, environ: WSGIEnvironment, identified: bool) -> None:
        """Complete the exchange with the callbacks' data and hand it to the agent."""
        try:
            if not identified:
                self.identify(ex, environ, ex.response_headers)
            if self._get_session_token is not None:
                ex.session_token = self._get_session_token(self.app, environ)
            if self._get_metadata is not None:
                ex.metadata = self._get_metadata(self.app, environ)
        except Exception:
            internal_error("WSGI identify")
        self.agent.record(ex)

    # Blocked by governance ---------------------------------------------------------------------

    def _blocked(
        self, ex: Exchange, plan: Plan, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        block = plan.block
        assert block is not None
        headers = list(block.headers)
        if self._echo_txid:
            headers.append((TRANSACTION_ID_HEADER, ex.transaction_id))
        ex.status = block.status
        ex.response_headers = headers
        ex.response_header_style = HEADERS_PAIRS
        ex.blocked_by = block.rule_id
        if self._log_body:
            ex.response_body = Body(self._max_body)
            ex.response_body.add(block.body)
        start_response(_status_line(block.status), headers)
        ex.response_time = time.time()
        self.finish(ex, environ, identified=True)
        return [block.body]


class _Identify:
    """The callable ``Agent.begin`` uses when governance needs identities before the app."""

    __slots__ = ("called", "environ", "ex", "middleware")

    def __init__(self, middleware: MoesifWSGIMiddleware, ex: Exchange, environ: Any) -> None:
        self.middleware = middleware
        self.ex = ex
        self.environ = environ
        self.called = False

    def __call__(self) -> None:
        self.called = True
        self.middleware.identify(self.ex, self.environ, None)


class _InputTee:
    """``wsgi.input`` as the app reads it, copying what it reads into the body capture."""

    def __init__(self, stream: Any, body: Body) -> None:
        self._stream = stream
        self._body = body

    def read(self, *args: Any) -> bytes:
        data: bytes = self._stream.read(*args)
        if data:
            self._body.add(data)
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._stream.readline(*args)
        if data:
            self._body.add(data)
        return data

    def readinto(self, buffer: Any) -> int | None:
        # Readers such as werkzeug's LimitedStream prefer readinto; servers such as gunicorn
        # only offer read, so fall back to it.
        readinto = getattr(self._stream, "readinto", None)
        if readinto is None:
            data = self._stream.read(len(buffer))
            count: int | None = len(data)
            buffer[: len(data)] = data
        else:
            count = readinto(buffer)
        if count:
            self._body.add(bytes(memoryview(buffer)[:count]))
        return count

    def read1(self, *args: Any) -> bytes:
        read1 = getattr(self._stream, "read1", None) or self._stream.read
        data: bytes = read1(*args)
        if data:
            self._body.add(data)
        return data

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(*args)
        for line in lines:
            self._body.add(line)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self._body.add(line)
            yield line

    def __getattr__(self, name: str) -> Any:  # anything else a server offers (fileno, ...)
        return getattr(self._stream, name)


class _Response:
    """start_response and the response iterable for one request."""

    __slots__ = (
        "_start_response",
        "capture",
        "environ",
        "ex",
        "extra_headers",
        "finished",
        "identified",
        "middleware",
    )

    def __init__(
        self,
        middleware: MoesifWSGIMiddleware,
        ex: Exchange,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        plan: Plan | None,
        capture: bool,
        identified: bool,
    ) -> None:
        self.middleware = middleware
        self.ex = ex
        self.environ = environ
        self._start_response = start_response
        self.extra_headers = plan.headers if plan is not None else []
        self.capture = capture
        self.identified = identified
        self.finished = False

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
            ex.response_headers = list(headers)
            ex.response_header_style = HEADERS_PAIRS
            extra = self.extra_headers
            if self.middleware._echo_txid:
                extra = [*extra, (TRANSACTION_ID_HEADER, ex.transaction_id)]
            if extra:
                headers = headers + extra  # a new list: the app's list is not mutated
                ex.response_headers += extra
        except Exception:
            internal_error("WSGI start_response")
        write = self._start_response(status, headers, exc_info)
        if self.capture:
            return _TeeWrite(write, self)
        return write

    def wrap(self, result: Iterable[bytes]) -> Iterable[bytes]:
        file_wrapper = self.environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            # Passed through untouched so the server can sendfile; recorded without its body.
            self.ex.notes = {"response_body": {"omitted": "file response"}}
            self.done(aborted=False)
            return result
        return _ResponseTee(result, self)

    def failed(self, exc: BaseException) -> None:
        """The app raised before returning its iterable."""
        self.ex.status = 500
        self.ex.error = type(exc).__name__
        self.done(aborted=False)

    def done(self, aborted: bool) -> None:
        """Finish the exchange once: after the last chunk and close(), or on failure."""
        if self.finished:
            return
        self.finished = True
        ex = self.ex
        if ex.response_time is None:
            ex.response_time = time.time()
        if ex.status is None:
            ex.status = 500 if ex.error else 200
        if aborted:
            ex.notes = {**(ex.notes or {}), "aborted": "the response was closed before its end"}
        self.middleware.finish(ex, self.environ, self.identified)


class _TeeWrite:
    """The legacy ``write()`` callable, teed like the response iterable."""

    __slots__ = ("response", "write")

    def __init__(self, write: Callable[[bytes], object], response: _Response) -> None:
        self.write = write
        self.response = response

    def __call__(self, data: bytes) -> object:
        ex = self.response.ex
        if ex.response_body is None:
            ex.response_body = Body(self.response.middleware._max_body)
        ex.response_body.add(data)
        return self.write(data)


class _ResponseTee:
    """The app's iterable, passed through chunk by chunk and copied up to the body cap."""

    def __init__(self, result: Iterable[bytes], response: _Response) -> None:
        self._result = result
        self._response = response
        self._completed = False

    def __iter__(self) -> Iterator[bytes]:
        response = self._response
        ex = response.ex
        body: Body | None = None
        if response.capture:
            body = ex.response_body
            if body is None:
                body = ex.response_body = Body(response.middleware._max_body)
        try:
            for chunk in self._result:
                if body is not None and chunk:
                    body.add(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            ex.error = type(exc).__name__
            ex.status = 500
            raise
        self._completed = True
        ex.response_time = time.time()
        response.done(aborted=False)  # the last byte is out; close() may come much later

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self._response.ex.error = self._response.ex.error or type(exc).__name__
            raise
        finally:
            response = self._response
            response.done(aborted=not self._completed and response.ex.error is None)


def _status_line(status: int) -> str:
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"{status} {phrase}"


MoesifMiddleware = MoesifWSGIMiddleware
