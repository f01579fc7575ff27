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
from collections.abc import Callable, Mapping
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
from .._capture import fill_from_environ, wsgi_text
from .._exchange import HEADERS_PAIRS, Body
from .._guard import internal_error
from .._options import Options
from ._core import (
    Flow,
    RequestCore,
    Steps,
    describe,
    file_response_notes,
    new_exchange,
    run_async,
    run_sync,
)
from ._reference import ReferenceMethods
from ._tee import InputTee, atee_chunks, tee_chunks

if TYPE_CHECKING:
    from .._governance import Plan
    from .._policy import Policy

__all__ = ["MoesifDjangoMiddleware", "MoesifMiddleware"]

Request = Any  # django.http.HttpRequest (Django ships no type information)
Response = Any  # django.http.HttpResponseBase

REQUEST_KEY = "_moesif_exchange"  # the request attribute holding the Exchange


class MoesifDjangoMiddleware(ReferenceMethods):
    """Django middleware that sends every API call the project serves to the collector.

    Put it first in ``MIDDLEWARE``, so that it also sees the responses other middleware
    produce, and configure it in ``settings.MOESIF`` (an :class:`~moesif_agent.Options`
    mapping)::

        MIDDLEWARE = [
            "moesif_agent.integrations.django.MoesifDjangoMiddleware",
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

    Without ``identify_user`` (or when it returns nothing) the user id is the username of
    ``request.user`` when the app already loaded it (the agent never loads it: that would
    add database queries), then the Authorization header. The session key is not sent as
    ``session_token`` by default (it is the credential the default masks hide in the Cookie
    header); return it from ``get_session_token`` to opt in. The URL pattern that served
    the request (``/items/<int:item_id>``) is recorded as ``metadata.route``. Middleware
    built with equal options share one agent: ``middleware.agent``.
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
        self.core = RequestCore(
            self.agent,
            asynchronous=self._is_async,
            callback_args=_callback_args,
            default_user=_default_user,
        )

    def process_exception(self, request: Request, exception: BaseException) -> None:
        """Django's hook for a view that raised (before it makes the 500 response): the
        exception's class and message go into the event. (Django runs exception hooks
        synchronously in every mode.)"""
        ex = getattr(request, REQUEST_KEY, None)
        if ex is not None:
            ex.error = describe(exception)

    def __call__(self, request: Request) -> Any:
        if self._is_async:
            return self._acall(request)
        flow = self._flow(request)
        if flow is None:
            return self.get_response(request)
        return run_sync(self._handle(flow))

    async def _acall(self, request: Request) -> Any:
        flow = self._flow(request)
        if flow is None:
            return await self.get_response(request)
        return await run_async(self._handle(flow))

    def _flow(self, request: Request) -> Flow | None:
        if not self.agent.enabled:
            return None
        try:
            return self._start(request)
        except Exception:
            internal_error("Django request capture")
            return None

    def _start(self, request: Request) -> Flow | None:
        method = request.method or "GET"
        path = request.path
        if self.core.skipped(method, path):
            return None
        meta = request.META
        ex = new_exchange(method, path, wsgi_text(meta.get("QUERY_STRING", "")))
        core = self.core
        fill_from_environ(
            ex, meta, request.scheme or "http", core.echo_txid, core.forwarding.trusts
        )
        setattr(request, REQUEST_KEY, ex)
        return _Request(core, ex, request)

    def _handle(self, flow: Flow) -> Steps[Any]:
        """One request, for both the sync and the async path: the view is called through
        the runner like any step (``yield self.get_response, (request,)``)."""
        core = self.core
        plan: Plan | None = None
        policy = self.agent.policy
        if not policy.trivial:
            plan = yield from core.begin(flow, policy, self._read_ahead(flow, policy))
            if plan is not None and plan.block is not None:
                response = flow.response = self._block_response(flow, plan.block.body)
                yield from core.finish(flow)
                return response
        capture = self._prepare(flow, plan)
        try:
            response = yield self.get_response, (flow.request,)
        except Exception as exc:
            core.failed(flow, exc)
            yield from core.finish(flow)
            raise
        except BaseException as exc:  # cancelled: awaiting callbacks now could raise again
            core.failed(flow, exc)
            core.record(flow)
            raise
        try:
            if not self._respond(flow, response, plan):
                return response
        except Exception:
            internal_error("Django response capture")
            return response
        if (yield from core.complete(flow)):
            try:
                self._capture_body(flow, response, capture)
            except Exception:
                internal_error("Django response capture")
        return response

    # Request side (no I/O, nothing blocking) -------------------------------------------------

    def _read_ahead(self, flow: Flow, policy: Policy) -> bytes | None:
        """The request body, for governance rules with body conditions, replayed to the view
        unchanged (Django's own size checks then apply to it as usual)."""
        try:
            request = flow.request
            meta = request.META
            size = self.core.body_ahead(
                policy, meta.get("CONTENT_TYPE", ""), meta.get("CONTENT_LENGTH")
            )
            stream = getattr(request, "_stream", None)
            if not size or stream is None or getattr(request, "_read_started", True):
                return None
            # Under ASGI Django has already received the whole body into a spooled file, so
            # this read does not wait on the client; under WSGI the view would wait anyway.
            data: bytes = stream.read(size)
            request._stream = io.BytesIO(data)
            return data
        except Exception:
            internal_error("Django request body")
            return None

    def _prepare(self, flow: Flow, plan: Plan | None) -> bool:
        """Tee the request stream when bodies are captured; True when they are."""
        if not self.core.capture(plan):
            return False
        try:
            request = flow.request
            meta = request.META
            if "wsgi.input" in meta and not meta.get("CONTENT_LENGTH"):
                return True  # under WSGI Django reads no body without a Content-Length
            body = flow.ex.request_body = Body(self.core.max_body)
            if hasattr(request, "_body"):  # read before us: nothing left to tee
                body.add(request._body)
                return True
            stream = getattr(request, "_stream", None)
            if stream is not None and not getattr(request, "_read_started", True):
                request._stream = InputTee(stream, body)
        except Exception:
            internal_error("Django request body")
        return True

    # Response side ----------------------------------------------------------------------------

    def _respond(self, flow: Flow, response: Response, plan: Plan | None) -> bool:
        """Add the agent's headers and note status, headers and route; False when ``response``
        is not a Django response (nothing to record from it)."""
        headers = getattr(response, "headers", None)
        if headers is None:
            return False
        flow.response = response
        ex = flow.ex
        for name, value in self.core.added_headers(flow, plan):
            headers[name] = value
        ex.status = response.status_code
        store = getattr(headers, "_store", None)  # ResponseHeaders: lower -> (name, value)
        items = list(store.values()) if type(store) is dict else list(headers.items())
        cookies = response.cookies
        if cookies:
            items += [("Set-Cookie", c.output(header="").strip()) for c in cookies.values()]
        ex.response_headers = items
        ex.response_header_style = HEADERS_PAIRS
        request = flow.request
        match = getattr(request, "resolver_match", None)
        route = getattr(match, "route", None)
        if route and isinstance(route, str):
            script_name = request.META.get("SCRIPT_NAME", "")
            ex.route = script_name.rstrip("/") + "/" + route.removeprefix("^")
        return True

    def _capture_body(self, flow: Flow, response: Response, capture: bool) -> None:
        """Copy the response body (or tee its stream) and record when it is complete."""
        ex = flow.ex
        if not response.streaming:
            if capture:
                body = ex.response_body = Body(self.core.max_body)
                container = getattr(response, "_container", None)
                if isinstance(container, list):  # the chunks as they are: no join
                    for chunk in container:
                        body.add(chunk)
                else:
                    body.add(response.content)
            self.core.record(flow)
            return
        closers = getattr(response, "_resource_closers", None)
        if closers is not None:
            closers.append(flow.closed)
        if getattr(response, "file_to_stream", None) is not None and flow.request.META.get(
            "wsgi.file_wrapper"
        ):
            # Django hands the file to the server's file_wrapper (sendfile) and never iterates
            # streaming_content; the call is recorded when the server closes the response.
            ex.notes = file_response_notes()
            flow.started = flow.completed = True
            return
        if capture:
            flow.body = ex.response_body = Body(self.core.max_body)
        tee = atee_chunks if response.is_async else tee_chunks
        response.streaming_content = tee(response.streaming_content, flow)

    def _block_response(self, flow: Flow, body: bytes) -> Response:
        ex = flow.ex
        response = HttpResponse(body, status=ex.status, content_type="application/json")
        headers = response.headers
        for name, value in ex.response_headers:
            headers[name] = value
        ex.response_headers = list(headers.items())
        return response


class _Request(Flow):
    """One Django request. The callbacks run when the view's response comes back (on the
    request's own thread or loop); a streamed response is recorded when it ends."""

    __slots__ = ()

    def done(self) -> None:
        self.core.record(self)


def _callback_args(flow: Flow) -> tuple[Any, ...]:
    return flow.request, flow.response


def _default_user(flow: Flow) -> str | None:
    """The username of the user the app already loaded; never loaded here (a database query
    the app did not make)."""
    request = flow.request
    found = request.__dict__
    user = found.get("_cached_user") or found.get("_acached_user")
    if user is None:
        user = found.get("user")
        if isinstance(user, LazyObject):
            user = None if user._wrapped is empty else user._wrapped
    return _username(user)


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


MoesifMiddleware = MoesifDjangoMiddleware
