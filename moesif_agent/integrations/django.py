"""Django: one middleware for WSGI and ASGI deployments, sync and async capable.

The request body is teed as the view reads it (``request.body``, ``request.POST``,
``request.FILES``, ``request.read()``): the agent never reads it itself, so
``DATA_UPLOAD_MAX_MEMORY_SIZE`` and upload handlers behave exactly as without it. Streaming
responses are teed chunk by chunk as the server iterates them (never buffered) and recorded at
their last chunk, or when Django closes the response. Under ASGI the middleware is a coroutine
middleware: no thread hop, nothing blocking on the event loop.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction
    from django.conf import settings as django_settings
    from django.core.exceptions import ImproperlyConfigured
    from django.http import HttpResponse
    from django.utils.functional import LazyObject, empty
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "moesif_agent.integrations.django needs Django: pip install 'moesif-agent[django]'"
    ) from exc

from .._agent import Agent
from .._callbacks import AdapterSettings, wrap, wrap_async
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
    from .._policy import Plan

__all__ = ["MoesifMiddleware"]

Request = Any  # django.http.HttpRequest (Django ships no type information)
Response = Any  # django.http.HttpResponseBase

REQUEST_KEY = "_moesif_exchange"  # the request attribute holding the Exchange
_FILE_RESPONSE_NOTE = {"response_body": {"omitted": "file response"}}


class MoesifMiddleware(AdapterSettings):
    """Django middleware that sends every API call the project serves to the collector.

    Put it first in ``MIDDLEWARE``, so that it also sees the responses other middleware
    produce, and configure it in ``settings.MOESIF`` (an :class:`~moesif_agent.Options`
    mapping)::

        MIDDLEWARE = [
            "moesif_agent.integrations.django.MoesifMiddleware",
            ...
        ]
        MOESIF = {"application_id": "your-app-id", "identify_user": identify_user}

    The reference agent's ``settings.MOESIF_MIDDLEWARE`` (UPPERCASE keys) works unchanged;
    when both settings exist, ``MOESIF`` wins key by key. Without either, the ``MOESIF_*``
    environment variables apply; a missing application id raises ``ImproperlyConfigured``
    at startup.

    Callbacks receive ``(request, response)``: the ``HttpRequest`` and the response
    (``None`` when governance needs an identity before the view runs, or when the view
    raised). ``skip`` is asked once the response exists; each callback is called at most
    once per request. Under ASGI they may be ``async`` and run on the event loop, so they
    must not block (use ``await request.auser()``, not ``request.user``).

    Without ``identify_user`` (or when it returns nothing) the user id is the authenticated
    ``request.user``'s username (``get_username()``, the reference agent's ``username``),
    then the Authorization header. Under ASGI the lazy ``request.user`` is never evaluated
    on the event loop: an already loaded user is used, else ``await request.auser()``.
    The session key is not sent as ``session_token`` by default (it is the credential the
    default masks hide in the Cookie header); return it from ``get_session_token`` to opt
    in. The URL pattern that served the request (``/items/<int:item_id>``) is recorded as
    ``metadata.route``. Middleware built with equal options share one agent:
    ``middleware.agent``.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[Request], Any],
        options: Options | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        self.get_response = get_response
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)
        try:
            if options is None:
                options = _options_from_settings()
            self.agent = Agent.shared(Options.coerce(options, **overrides))
        except (TypeError, ValueError) as exc:
            message = str(exc)
            if not message.startswith("moesif-agent"):
                message = "moesif-agent: " + message
            raise ImproperlyConfigured(message) from exc
        o = self.agent.options
        wrapper: Callable[[str, Any], Any] = wrap_async if self._is_async else wrap
        self._read_settings(o, wrapper)

    def __call__(self, request: Request) -> Any:
        if self._is_async:
            return self._acall(request)
        agent = self.agent
        if not agent.enabled:
            return self.get_response(request)
        try:
            ex = self._start(request)
        except Exception:
            internal_error("Django request capture")
            ex = None
        if ex is None:
            return self.get_response(request)
        identify = _Identify(self, request, ex)
        plan: Plan | None = None
        try:
            ahead = self._read_ahead(request, ex) if agent.policy.needs_body else None
            plan = agent.begin(ex, identify, ahead)
            if plan is not None and plan.block is not None:
                response = self._block_response(ex, plan)
                self._complete(request, response, ex, identify.called, check_skip=False)
                return response
        except Exception:
            internal_error("governance")
        capture = self._prepare(request, ex, plan)
        try:
            response = self.get_response(request)
        except BaseException as exc:
            self._failed(ex, exc)
            self._complete(request, None, ex, identify.called, check_skip=True)
            raise
        try:
            if self._respond(request, response, ex, plan):
                if self._complete(request, response, ex, identify.called, check_skip=True):
                    self._capture_body(request, response, ex, capture)
        except Exception:
            internal_error("Django response capture")
        return response

    async def _acall(self, request: Request) -> Any:
        agent = self.agent
        if not agent.enabled:
            return await self.get_response(request)
        try:
            ex = self._start(request)
        except Exception:
            internal_error("Django request capture")
            ex = None
        if ex is None:
            return await self.get_response(request)
        identified = False
        plan: Plan | None = None
        try:
            policy = agent.policy
            ahead = self._read_ahead(request, ex) if policy.needs_body else None
            if policy.needs_identity:
                identified = True
                await self._aidentify(request, None, ex)
            plan = agent.begin(ex, None, ahead)
            if plan is not None and plan.block is not None:
                response = self._block_response(ex, plan)
                await self._acomplete(request, response, ex, identified, check_skip=False)
                return response
        except Exception:
            internal_error("governance")
        capture = self._prepare(request, ex, plan)
        try:
            response = await self.get_response(request)
        except Exception as exc:
            self._failed(ex, exc)
            await self._acomplete(request, None, ex, identified, check_skip=True)
            raise
        except BaseException as exc:  # cancelled: awaiting callbacks now could raise again
            self._failed(ex, exc)
            self._record(ex)
            raise
        try:
            if self._respond(request, response, ex, plan):
                if await self._acomplete(request, response, ex, identified, check_skip=True):
                    self._capture_body(request, response, ex, capture)
        except Exception:
            internal_error("Django response capture")
        return response

    # Request side (shared by both paths: no I/O, nothing blocking) ----------------------------

    def _start(self, request: Request) -> Exchange | None:
        meta = request.META
        method = request.method or "GET"
        path = request.path
        if self.agent.skips(method, path):
            return None
        ex = Exchange()
        ex.request_time = time.time()
        ex.method = method
        ex.path = path or "/"
        ex.query = meta.get("QUERY_STRING", "")
        fill_from_environ(ex, meta, request.scheme or "http", self._echo_txid)
        setattr(request, REQUEST_KEY, ex)
        return ex

    def _read_ahead(self, request: Request, ex: Exchange) -> bytes | None:
        """The request body, for governance rules with body conditions: read only when it is
        JSON with a known length within max_body_size, and replayed to the view unchanged
        (Django's own size checks then apply to it as usual)."""
        meta = request.META
        if "json" not in meta.get("CONTENT_TYPE", ""):
            return None
        try:
            length = int(meta.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return None
        stream = getattr(request, "_stream", None)
        if stream is None or getattr(request, "_read_started", True):
            return None
        if not 0 < length <= self._max_body:
            return None
        # Under ASGI Django has already received the whole body into a spooled file, so this
        # read does not wait on the client; under WSGI the view would wait for it anyway.
        data: bytes = stream.read(length)
        request._stream = io.BytesIO(data)
        return data

    def _prepare(self, request: Request, ex: Exchange, plan: Plan | None) -> bool:
        """Tee the request stream when bodies are captured; True when they are."""
        if not self._log_body or (plan is not None and not plan.capture):
            return False
        try:
            meta = request.META
            if "wsgi.input" in meta and not meta.get("CONTENT_LENGTH"):
                return True  # under WSGI Django reads no body without a Content-Length
            body = ex.request_body = Body(self._max_body)
            if hasattr(request, "_body"):  # read before us: nothing left to tee
                body.add(request._body)
                return True
            stream = getattr(request, "_stream", None)
            if stream is not None and not getattr(request, "_read_started", True):
                request._stream = _StreamTee(stream, body)
        except Exception:
            internal_error("Django request body")
        return True

    def _identify_credentials(self, ex: Exchange) -> None:
        """Governance needs the user before the view: the Authorization header, as the worker
        would read it."""
        for name in self._auth_headers:
            value = header_value(HEADERS_WSGI, ex.request_headers, name)
            if value:
                ex.user_id = user_from_credentials(value, self._auth_field)
                if ex.user_id:
                    return

    def identify(self, request: Request, response: Response | None, ex: Exchange) -> None:
        """Fill user and company ids (sync path): callbacks, then Django's user."""
        if self._identify_user is not None:
            ex.user_id = self._identify_user(request, response)
        if ex.user_id is None:
            if response is None:
                self._identify_credentials(ex)
            else:
                ex.user_id = _username(getattr(request, "user", None))
        if self._identify_company is not None:
            ex.company_id = self._identify_company(request, response)

    async def _aidentify(self, request: Request, response: Response | None, ex: Exchange) -> None:
        """The async path's ``identify``: callbacks awaited, the user loaded without blocking."""
        if self._identify_user is not None:
            ex.user_id = await self._identify_user(request, response)
        if ex.user_id is None:
            if response is None:
                self._identify_credentials(ex)
            else:
                ex.user_id = _username(await _auser(request))
        if self._identify_company is not None:
            ex.company_id = await self._identify_company(request, response)

    # Response side ----------------------------------------------------------------------------

    def _respond(
        self, request: Request, response: Response, ex: Exchange, plan: Plan | None
    ) -> bool:
        """Add the agent's headers and note status, headers and route; False when ``response``
        is not a Django response (nothing to record from it)."""
        headers = getattr(response, "headers", None)
        if headers is None:
            return False
        if plan is not None:
            for name, value in plan.headers:
                headers[name] = value
        if self._echo_txid:
            headers[TRANSACTION_ID_HEADER] = ex.transaction_id
        ex.status = response.status_code
        store = getattr(headers, "_store", None)  # ResponseHeaders: lower -> (name, value)
        items = list(store.values()) if type(store) is dict else list(headers.items())
        cookies = response.cookies
        if cookies:
            items += [("Set-Cookie", c.output(header="").strip()) for c in cookies.values()]
        ex.response_headers = items
        ex.response_header_style = HEADERS_PAIRS
        match = getattr(request, "resolver_match", None)
        route = getattr(match, "route", None)
        if route and isinstance(route, str):
            script_name = request.META.get("SCRIPT_NAME", "")
            ex.route = script_name.rstrip("/") + "/" + route.removeprefix("^")
        return True

    def _complete(
        self,
        request: Request,
        response: Response | None,
        ex: Exchange,
        identified: bool,
        *,
        check_skip: bool,
    ) -> bool:
        """Run the callbacks (sync path); False when ``skip`` excludes the call."""
        try:
            if check_skip and self._skip is not None and self._skip(request, response):
                self.agent.skipped()
                return False
            if identified:
                if ex.user_id is None and response is not None:
                    ex.user_id = _username(getattr(request, "user", None))
            else:
                self.identify(request, response, ex)
            if self._get_session_token is not None:
                ex.session_token = self._get_session_token(request, response)
            if self._get_metadata is not None:
                ex.metadata = self._get_metadata(request, response)
        except Exception:
            internal_error("Django identify")
        if response is None or ex.blocked_by is not None:
            self._record(ex)
        return True

    async def _acomplete(
        self,
        request: Request,
        response: Response | None,
        ex: Exchange,
        identified: bool,
        *,
        check_skip: bool,
    ) -> bool:
        """Run the callbacks (async path); False when ``skip`` excludes the call."""
        try:
            if check_skip and self._skip is not None and await self._skip(request, response):
                self.agent.skipped()
                return False
            if identified:
                if ex.user_id is None and response is not None:
                    ex.user_id = _username(await _auser(request))
            else:
                await self._aidentify(request, response, ex)
            if self._get_session_token is not None:
                ex.session_token = await self._get_session_token(request, response)
            if self._get_metadata is not None:
                ex.metadata = await self._get_metadata(request, response)
        except Exception:
            internal_error("Django identify")
        if response is None or ex.blocked_by is not None:
            self._record(ex)
        return True

    def _capture_body(
        self, request: Request, response: Response, ex: Exchange, capture: bool
    ) -> None:
        """Copy the response body (or tee its stream) and record when it is complete."""
        if not response.streaming:
            if capture:
                body = ex.response_body = Body(self._max_body)
                container = getattr(response, "_container", None)
                if isinstance(container, list):  # the chunks as they are: no join
                    for chunk in container:
                        body.add(chunk)
                else:
                    body.add(response.content)
            self._record(ex)
            return
        stream = _Stream(self.agent, ex)
        closers = getattr(response, "_resource_closers", None)
        if closers is not None:
            closers.append(stream.closed)
        if getattr(response, "file_to_stream", None) is not None and request.META.get(
            "wsgi.file_wrapper"
        ):
            # Django hands the file to the server's file_wrapper (sendfile) and never iterates
            # streaming_content; the call is recorded when the server closes the response.
            ex.notes = dict(_FILE_RESPONSE_NOTE)
            stream.started = True
            stream.completed = True
            return
        if capture:
            ex.response_body = Body(self._max_body)
        if response.is_async:
            response.streaming_content = _tee_async(response.streaming_content, stream)
        else:
            response.streaming_content = _tee_sync(response.streaming_content, stream)

    def _block_response(self, ex: Exchange, plan: Plan) -> Response:
        block = plan.block
        assert block is not None
        response = HttpResponse(block.body, status=block.status, content_type="application/json")
        headers = response.headers
        for name, value in block.headers:
            headers[name] = value
        if self._echo_txid:
            headers[TRANSACTION_ID_HEADER] = ex.transaction_id
        ex.status = block.status
        ex.response_headers = list(headers.items())
        ex.response_header_style = HEADERS_PAIRS
        ex.blocked_by = block.rule_id
        if self._log_body:
            ex.response_body = Body(self._max_body)
            ex.response_body.add(block.body)
        return response

    def _failed(self, ex: Exchange, exc: BaseException) -> None:
        """The view raised and Django did not turn it into a response."""
        ex.status = 500
        ex.error = type(exc).__name__

    def _record(self, ex: Exchange) -> None:
        if ex.response_time is None:
            ex.response_time = time.time()
        self.agent.record(ex)


class _Identify:
    """The zero-argument callable ``Agent.begin`` uses when governance needs the ids before
    the view runs (sync path)."""

    __slots__ = ("called", "ex", "middleware", "request")

    def __init__(self, middleware: MoesifMiddleware, request: Request, ex: Exchange) -> None:
        self.middleware = middleware
        self.request = request
        self.ex = ex
        self.called = False

    def __call__(self) -> None:
        self.called = True
        self.middleware.identify(self.request, None, self.ex)


class _StreamTee:
    """``request._stream`` as the view reads it, copying what it reads into the body capture.

    Positions are tracked so that a seekable stream (ASGI's spooled body file) that is
    re-read is not copied twice."""

    __slots__ = ("_body", "_copied", "_pos", "_stream")

    def __init__(self, stream: Any, body: Body) -> None:
        self._stream = stream
        self._body = body
        self._pos = 0
        self._copied = 0

    def _tee(self, data: bytes) -> bytes:
        start = self._pos
        end = self._pos = start + len(data)
        if end > self._copied:
            self._body.add(data if start >= self._copied else data[self._copied - start :])
            self._copied = end
        return data

    def read(self, *args: Any) -> bytes:
        return self._tee(self._stream.read(*args))

    def readline(self, *args: Any) -> bytes:
        return self._tee(self._stream.readline(*args))

    def seek(self, *args: Any) -> int:
        position: int = self._stream.seek(*args)
        self._pos = position
        return position

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def __getattr__(self, name: str) -> Any:  # close, seekable, tell...
        return getattr(self._stream, name)


class _Stream:
    """The end of one streaming response: its last chunk, or Django's ``response.close()``."""

    __slots__ = ("agent", "completed", "ex", "finished", "started")

    def __init__(self, agent: Agent, ex: Exchange) -> None:
        self.agent = agent
        self.ex = ex
        self.started = False
        self.completed = False
        self.finished = False

    def end(self) -> None:
        self.completed = True
        self.ex.response_time = time.time()
        self.finish()

    def failed(self, exc: BaseException) -> None:
        self.ex.error = type(exc).__name__
        self.finish()

    def closed(self) -> None:
        if self.started and not self.completed and self.ex.error is None:
            self.ex.notes = {**(self.ex.notes or {}), "aborted": "the response was closed early"}
        self.finish()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        ex = self.ex
        if ex.response_time is None:
            ex.response_time = time.time()
        self.agent.record(ex)


def _tee_sync(content: Iterable[bytes], stream: _Stream) -> Iterator[bytes]:
    stream.started = True
    body = stream.ex.response_body
    try:
        for chunk in content:
            if body is not None:
                body.add(chunk)
            yield chunk
    except GeneratorExit:
        raise
    except BaseException as exc:
        stream.failed(exc)
        raise
    stream.end()


async def _tee_async(content: AsyncIterator[bytes], stream: _Stream) -> AsyncIterator[bytes]:
    stream.started = True
    body = stream.ex.response_body
    try:
        async for chunk in content:
            if body is not None:
                body.add(chunk)
            yield chunk
    except GeneratorExit:
        raise
    except BaseException as exc:
        stream.failed(exc)
        raise
    stream.end()


def _username(user: Any) -> str | None:
    """The id the reference agent reports: the authenticated user's username."""
    if user is None:
        return None
    try:
        if not user.is_authenticated:
            return None
        get_username = getattr(user, "get_username", None)
        name = get_username() if get_username is not None else getattr(user, "username", None)
    except Exception:
        internal_error("Django request.user")
        return None
    return str(name) if name else None


async def _auser(request: Request) -> Any:
    """``request.user`` without evaluating a lazy user on the event loop."""
    user = request.__dict__.get("user")
    if isinstance(user, LazyObject):
        loaded = user._wrapped
        if loaded is not empty:
            return loaded
        user = None
    if user is None:
        auser: Callable[[], Awaitable[Any]] | None = getattr(request, "auser", None)
        if auser is not None:
            try:
                return await auser()
            except Exception:
                internal_error("Django request.auser")
    return user


def _options_from_settings() -> Options | Mapping[str, Any] | None:
    """``settings.MOESIF`` (Options or a mapping) over ``settings.MOESIF_MIDDLEWARE``."""
    current = getattr(django_settings, "MOESIF", None)
    legacy = getattr(django_settings, "MOESIF_MIDDLEWARE", None)
    for name, value in (("MOESIF", current), ("MOESIF_MIDDLEWARE", legacy)):
        if value is not None and not isinstance(value, Mapping | Options):
            raise ImproperlyConfigured(
                f"settings.{name} must be a dict of moesif-agent options, "
                f"got {type(value).__name__}"
            )
    if isinstance(current, Options):
        return current
    if legacy is None:
        return current
    if isinstance(legacy, Options):
        return Options.coerce(legacy, **(current or {}))
    return {**legacy, **(current or {})}
