"""Outgoing API calls made with httpx (sync and async clients) and requests, opt-in with
``capture_outgoing=True`` (runs on the caller's thread or event loop).

``httpx.Client.send``, ``httpx.AsyncClient.send`` and ``requests.Session.send`` are wrapped
once per process. The original call is made exactly once, with the caller's arguments, and its
outcome (response or exception) is what the caller gets: capture failures are swallowed.
Streamed responses are teed as the caller reads them, never read ahead. The agent's own
uploads never pass through these methods (they use httpx's transport directly), and calls to
the collector's address are skipped as well.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from .._capture import new_transaction_id
from .._exchange import HEADERS_PAIRS, Body
from .._guard import internal_error
from ._core import Flow, RequestCore, new_exchange
from ._tee import atee_chunks, tee_chunks

if TYPE_CHECKING:
    from .._agent import Agent

logger = logging.getLogger(__name__)

_lock = threading.Lock()  # taken only at install/uninstall, never on a call
_agent_ref: weakref.ReferenceType[Agent] | None = None
_config: _Config | None = None
_patched: dict[str, tuple[Any, str, Any]] = {}  # what was replaced, to restore it


class _Config:
    """The capturing agent's outgoing options, read once."""

    def __init__(self, agent: Agent) -> None:
        self.collector = urlsplit(agent.options.base_uri).netloc
        self.core = RequestCore(
            agent, asynchronous=False, callback_args=_callback_args, outgoing=True
        )


def _callback_args(flow: Flow) -> tuple[Any, ...]:
    return flow.request, flow.response


def install(agent: Agent) -> None:
    """Capture outgoing calls into ``agent`` (the latest agent installed wins)."""
    global _agent_ref, _config
    with _lock:
        _agent_ref = weakref.ref(agent)
        _config = _Config(agent)
        _patch_httpx()
        _patch_requests()


def uninstall() -> None:
    """Restore the original methods (for tests and for shutting capture off)."""
    global _agent_ref, _config
    with _lock:
        for owner, name, original in _patched.values():
            setattr(owner, name, original)
        _patched.clear()
        _agent_ref = None
        _config = None


def _current() -> _Config | None:
    agent = _agent_ref() if _agent_ref is not None else None
    config = _config
    if agent is None or config is None or not agent.enabled:
        return None
    return config


class _Call(Flow):
    """One outgoing call being captured (a streamed response ends through ``Flow``)."""

    __slots__ = ()

    def finish(self, response: Any) -> None:
        if self.finished:
            return
        self.response = response
        ex = self.ex
        if ex.response_time is None:
            ex.response_time = time.time()
        self.core.finish_now(self)

    def send_failed(self, exc: BaseException) -> None:
        """The library raised: no response to record, the exception in the event."""
        self.core.failed(self, exc, response_started=True)
        self.finish(None)


class _Sending:
    """One send by the library: its outcome reaches the capture when the send ends (the
    library's own result or exception passes through unchanged)."""

    __slots__ = ("call", "extra", "respond", "response")

    def __init__(
        self, call: _Call | None, respond: Callable[[_Call, Any, Any], None], extra: Any
    ) -> None:
        self.call = call
        self.respond = respond
        self.extra = extra
        self.response: Any = None

    def __enter__(self) -> _Sending:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, traceback: Any) -> None:
        call = self.call
        if call is None:
            return
        if exc is not None:
            call.send_failed(exc)
            return
        try:
            self.respond(call, self.response, self.extra)
        except Exception:
            internal_error("outgoing capture (response)")
            call.finish(self.response)


def _start(method: str, url: str, headers: list[tuple[str, str]], body: Any) -> _Call | None:
    current = _current()
    if current is None:
        return None
    config = current
    parts = urlsplit(url)
    if parts.netloc == config.collector:
        return None
    core = config.core
    ex = new_exchange(method, parts.path, parts.query)
    ex.direction = "Outgoing"
    ex.transaction_id = new_transaction_id()
    ex.scheme = parts.scheme or "http"
    ex.host = parts.netloc
    ex.request_header_style = HEADERS_PAIRS
    ex.request_headers = headers
    if core.log_body:
        captured = Body(core.max_body)
        if isinstance(body, str):
            body = body.encode("utf-8")
        if isinstance(body, bytes | bytearray):
            captured.add(bytes(body))
        ex.request_body = captured
        ex.response_body = Body(core.max_body)
    return _Call(core, ex, None)


def _set_response(call: _Call, status: int, headers: list[tuple[str, str]]) -> None:
    call.ex.status = status
    call.ex.response_header_style = HEADERS_PAIRS
    call.ex.response_headers = headers
    call.ex.decoded = True


def _add(call: _Call, chunk: bytes) -> None:
    body = call.ex.response_body
    if body is not None and chunk:
        body.add(chunk)


# httpx -----------------------------------------------------------------------------------------


def _patch_httpx() -> None:
    if "httpx.Client" in _patched:
        return

    original_send = httpx.Client.send
    original_async_send = httpx.AsyncClient.send

    @functools.wraps(original_send)
    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        with _Sending(_httpx_start(request), _httpx_response, _SyncTee) as sending:
            sending.response = response = original_send(self, request, **kwargs)
        return response

    @functools.wraps(original_async_send)
    async def async_send(
        self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any
    ) -> httpx.Response:
        with _Sending(_httpx_start(request), _httpx_response, _AsyncTee) as sending:
            sending.response = response = await original_async_send(self, request, **kwargs)
        return response

    _patched["httpx.Client"] = (httpx.Client, "send", original_send)
    _patched["httpx.AsyncClient"] = (httpx.AsyncClient, "send", original_async_send)
    httpx.Client.send = send  # type: ignore[method-assign]
    httpx.AsyncClient.send = async_send  # type: ignore[method-assign]


def _httpx_start(request: Any) -> _Call | None:
    try:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        try:
            body = request.content
        except Exception:  # a streaming request body: not read, not captured
            body = None
        call = _start(request.method, str(request.url), headers, body)
        if call is not None:
            call.request = request
        return call
    except Exception:
        internal_error("outgoing capture (httpx request)")
        return None


def _httpx_response(call: _Call, response: Any, tee: type[_SyncTee | _AsyncTee]) -> None:
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw]
    _set_response(call, response.status_code, headers)
    if hasattr(response, "_content"):  # already read (stream=False): decoded content
        _add(call, response.content)
        call.finish(response)
        return
    # Streamed: tee the raw (still content-encoded) stream as the caller reads it.
    call.ex.decoded = False
    call.response = response
    call.body = call.ex.response_body
    response.stream = tee(response.stream, call)


class _SyncTee(httpx.SyncByteStream):
    def __init__(self, inner: Any, end: _Call) -> None:
        self.inner = inner
        self.end = end

    def __iter__(self) -> Iterator[bytes]:
        return tee_chunks(self.inner, self.end)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.end.closed()


class _AsyncTee(httpx.AsyncByteStream):
    def __init__(self, inner: Any, end: _Call) -> None:
        self.inner = inner
        self.end = end

    def __aiter__(self) -> AsyncIterator[bytes]:
        return atee_chunks(self.inner, self.end)

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            self.end.closed()


# requests --------------------------------------------------------------------------------------


def _patch_requests() -> None:
    try:
        import requests
    except ImportError:
        return
    if "requests.Session" in _patched:
        return
    original_send = requests.Session.send

    @functools.wraps(original_send)
    def send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        with _Sending(_requests_start(request), _requests_response, kwargs.get("stream")) as sent:
            sent.response = original_send(self, request, **kwargs)
        return sent.response

    _patched["requests.Session"] = (requests.Session, "send", original_send)
    requests.Session.send = send  # type: ignore[method-assign]


def _requests_start(request: Any) -> _Call | None:
    try:
        headers = [(str(k), str(v)) for k, v in request.headers.items()]
        call = _start(request.method or "GET", request.url, headers, request.body)
        if call is not None:
            call.request = request
        return call
    except Exception:
        internal_error("outgoing capture (requests request)")
        return None


def _requests_response(call: _Call, response: Any, streamed: Any) -> None:
    headers = [(str(k), str(v)) for k, v in response.headers.items()]
    _set_response(call, response.status_code, headers)
    if not streamed:
        _add(call, response.content)
        call.finish(response)
        return
    # Streamed: tee iter_content (which .content, .text and iter_lines use) and finish
    # when it is exhausted or the response is closed.
    original_iter = response.iter_content
    original_close = response.close

    def iter_content(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for chunk in original_iter(*args, **kwargs):
            if isinstance(chunk, bytes):
                _add(call, chunk)
            yield chunk
        call.finish(response)

    def close() -> None:
        try:
            original_close()
        finally:
            call.finish(response)

    response.iter_content = iter_content
    response.close = close
