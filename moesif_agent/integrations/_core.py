"""The request core: every step an adapter takes for one request, written once.

An adapter translates its framework's objects into an :class:`Exchange` and a :class:`Flow`,
then drives the steps here: skip rules, governance before the app (identify, block, added
headers), failure, finish (skip callback, identify, session, metadata) and record. Steps that
may call a user callback are generators yielding ``(callback, args)``: :func:`run_sync` calls
each one, :func:`run_async` awaits it, so sync and async stacks run the same code (the shape of
httpx's ``Auth.auth_flow``). Runs on the request thread or the event loop: no I/O, no locks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from .._capture import TRANSACTION_ID_HEADER, credentials_user
from .._exchange import HEADERS_PAIRS, Body, Exchange
from .._forwarding import Forwarding
from .._guard import internal_error
from ._settings import CALLBACKS, Callbacks, SkipRules

if TYPE_CHECKING:
    from .._agent import Agent
    from .._governance import Plan
    from .._policy import Policy

T = TypeVar("T")
Step = tuple[Callable[..., Any], tuple[Any, ...]]
Steps = Generator[Step, Any, T]


def run_sync(steps: Steps[T]) -> T:
    """Drive ``steps`` on a sync stack: each yielded callable is called with its arguments;
    what it raises is thrown back into the steps."""
    try:
        fn, args = next(steps)
        while True:
            try:
                result = fn(*args)
            except BaseException as exc:
                fn, args = steps.throw(exc)
            else:
                fn, args = steps.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value


async def run_async(steps: Steps[T]) -> T:
    """Drive ``steps`` on an async stack: each yielded callable returns an awaitable."""
    try:
        fn, args = next(steps)
        while True:
            try:
                result = await fn(*args)
            except BaseException as exc:
                fn, args = steps.throw(exc)
            else:
                fn, args = steps.send(result)
    except StopIteration as stop:
        value: T = stop.value
        return value


class Flow:
    """One request's way through the core: its exchange, what callbacks receive as the request
    and (once there is one) the response, which steps already ran, and how a streamed
    response ended (``end``, ``failed``, ``closed``: ``done`` runs once, at the first)."""

    __slots__ = (
        "body",
        "completed",
        "core",
        "ended",
        "ex",
        "finished",
        "identified",
        "request",
        "response",
        "started",
    )

    def __init__(self, core: RequestCore, ex: Exchange, request: Any) -> None:
        self.core = core
        self.ex = ex
        self.request = request
        self.response: Any = None
        self.identified = False
        self.finished = False
        self.body: Body | None = None  # where response chunks are copied (None: not captured)
        self.started = False  # a chunk went to the server: the status the client got is known
        self.completed = False
        self.ended = False

    def end(self) -> None:
        """The last byte is out (a server's close() may come much later)."""
        self.completed = True
        self.ex.response_time = time.time()
        if not self.ended:
            self.ended = True
            self.done()

    def failed(self, exc: BaseException) -> None:
        if self.ex.error is None:
            self.core.failed(self, exc, response_started=self.started)
        self._ending()

    def closed(self) -> None:
        ex = self.ex
        if self.started and not self.completed and ex.error is None:
            ex.notes = {**(ex.notes or {}), "aborted": "the response was closed before its end"}
        self._ending()

    def _ending(self) -> None:
        if not self.ended:
            self.ended = True
            self.done()

    def done(self) -> None:
        """Once the response ended: callbacks and record (a sync stack's default)."""
        self.core.finish_now(self)


class RequestCore:
    """The steps of one request, for one middleware (which holds it as ``core``).

    ``callback_args(flow)`` gives the arguments every callback receives; ``identify_args``
    those of identify_user/identify_company (default: the same). ``default_user(flow)`` is the
    framework's own idea of the user (Django's logged-in user), asked after the app when no
    callback named one. With ``skip_before_app`` the adapter asks ``skip`` itself before the
    app (WSGI's ``skip(app, environ)``) and ``finish`` does not ask it again."""

    def __init__(
        self,
        agent: Agent,
        *,
        asynchronous: bool,
        callback_args: Callable[[Flow], tuple[Any, ...]],
        identify_args: Callable[[Flow], tuple[Any, ...]] | None = None,
        default_user: Callable[[Flow], str | None] | None = None,
        skip_before_app: bool = False,
        outgoing: bool = False,
    ) -> None:
        options = agent.options
        self.agent = agent
        self.callbacks = Callbacks(options, asynchronous=asynchronous, outgoing=outgoing)
        self.skips = SkipRules(options)
        self.skips_any = bool(self.skips.methods) or self.skips.paths is not None
        self.log_body = options.log_body_outgoing if outgoing else options.log_body
        self.max_body = options.max_body_size
        self.echo_txid = not options.disable_transaction_id
        self.forwarding = Forwarding(options.trusted_proxies, options.client_ip_header)
        self.auth_headers = options.authorization_header_name
        self.auth_field = options.authorization_user_id_field
        self.args = callback_args
        self.identify_args = identify_args or callback_args
        self.default_user = default_user
        self.skip_before_app = skip_before_app
        callbacks = self.callbacks
        self.plain = default_user is None and all(
            getattr(callbacks, name) is None for name in CALLBACKS
        )

    # Before the app -----------------------------------------------------------------------------

    def skipped(self, method: str, path: str) -> bool:
        """Whether the declarative skip rules pass this request straight to the app."""
        if self.skips_any and self.skips(method, path):
            self.agent._skipped.increment()
            return True
        return False

    def skip_asked(self, answer: Any) -> bool:
        """Count a request the ``skip`` callback excluded; returns the answer as a bool."""
        if answer:
            self.agent._skipped.increment()
            return True
        return False

    def body_ahead(self, policy: Policy, content_type: str | None, length: Any) -> int:
        """How many request body bytes governance wants read before the app (0: none). Only a
        JSON body of a known length within ``max_body_size`` is read ahead, and the adapter
        replays it to the app unchanged. Media types are case-insensitive: ``APPLICATION/JSON``
        is JSON to the app, so it is to the rules."""
        if not policy.needs_body or not content_type or "json" not in content_type.lower():
            return 0
        try:
            size = int(length)
        except (TypeError, ValueError):
            return 0
        return size if 0 < size <= self.max_body else 0

    def begin(self, flow: Flow, policy: Policy, body: bytes | None = None) -> Steps[Plan | None]:
        """Governance (and early sampling) before the app; the ids first when rules need them.
        A blocked request's exchange is completed here; the adapter sends ``block_headers``."""
        try:
            if policy.needs_identity:
                yield from self.identify(flow, before_app=True)
            plan = policy.begin(flow.ex, body)
        except Exception:
            internal_error("governance")
            return None
        if plan is not None and plan.block is not None:
            self.agent._blocked.increment()
            ex = flow.ex
            block = plan.block
            headers = list(block.headers)
            if self.echo_txid:
                headers.append((TRANSACTION_ID_HEADER, ex.transaction_id))
            ex.status = block.status
            ex.response_headers = headers
            ex.response_header_style = HEADERS_PAIRS
            ex.blocked_by = block.rule_id
            if self.log_body:
                ex.response_body = Body(self.max_body)
                ex.response_body.add(block.body)
        return plan

    def added_headers(self, flow: Flow, plan: Plan | None) -> list[tuple[str, str]]:
        """Headers the agent adds to the app's response: governance's, the transaction id."""
        headers = plan.headers if plan is not None else []
        if self.echo_txid:
            headers = [*headers, (TRANSACTION_ID_HEADER, flow.ex.transaction_id)]
        return headers

    def capture(self, plan: Plan | None) -> bool:
        """Whether bodies are copied (off when sampling already dropped the call)."""
        return self.log_body and (plan is None or plan.capture)

    def identify(self, flow: Flow, *, before_app: bool) -> Steps[None]:
        """User and company ids, once per request: the callbacks, then (before the app, for
        governance) the credentials, else afterwards the framework's user."""
        flow.identified = True
        ex = flow.ex
        callbacks = self.callbacks
        if callbacks.identify_user is not None:
            ex.user_id = yield callbacks.identify_user, self.identify_args(flow)
        if ex.user_id is None:
            if before_app:
                ex.user_id = credentials_user(ex, self.auth_headers, self.auth_field)
            elif self.default_user is not None:
                ex.user_id = self.default_user(flow)
        if callbacks.identify_company is not None:
            ex.company_id = yield callbacks.identify_company, self.identify_args(flow)

    # After the app ------------------------------------------------------------------------------

    def failed(self, flow: Flow, exc: BaseException, *, response_started: bool = False) -> None:
        """The app raised: the call is recorded as what the client got (500 when nothing was
        sent yet) with the exception's class and message."""
        ex = flow.ex
        ex.error = describe(exc)
        if not response_started:
            ex.status = 500

    def finish(self, flow: Flow) -> Steps[None]:
        """Once per request: ``complete``, then record (unless ``skip`` excluded the call)."""
        if (yield from self.complete(flow)):
            self.record(flow)

    def complete(self, flow: Flow) -> Steps[bool]:
        """Once per request: the skip callback, identify (unless done before the app), session
        token, metadata. False when the call is not to be recorded."""
        if flow.finished:
            return False
        flow.finished = True
        ex = flow.ex
        callbacks = self.callbacks
        try:
            if callbacks.skip is not None and not self.skip_before_app:
                if self.skip_asked((yield callbacks.skip, self.args(flow))):
                    return False
            if not flow.identified and (
                callbacks.identify_user is not None or callbacks.identify_company is not None
            ):
                yield from self.identify(flow, before_app=False)
            elif ex.user_id is None and self.default_user is not None:
                ex.user_id = self.default_user(flow)
            if callbacks.get_session_token is not None:
                ex.session_token = yield callbacks.get_session_token, self.args(flow)
            if callbacks.get_metadata is not None:
                ex.metadata = yield callbacks.get_metadata, self.args(flow)
        except Exception:
            internal_error("finish")
        return True

    def finish_now(self, flow: Flow) -> None:
        """``finish`` on a sync stack; straight to ``record`` when there is no callback."""
        if not self.plain:
            run_sync(self.finish(flow))
        elif not flow.finished:
            self.record(flow)

    def record(self, flow: Flow) -> None:
        """Hand the exchange to the agent, without callbacks (e.g. after a cancellation)."""
        flow.finished = True
        ex = flow.ex
        if ex.response_time is None:
            ex.response_time = time.time()
        self.agent.record(ex)


def describe(exc: BaseException) -> tuple[str, str]:
    """(class name, message) of an exception, as an event carries it: never a traceback,
    the message cut at 1000 characters (and masked by key on the worker)."""
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not break the request
        message = ""
    return type(exc).__name__, message[:1000]


def file_response_notes() -> dict[str, Any]:
    """The notes of an exchange whose response is a file the server sends itself (sendfile,
    ``wsgi.file_wrapper``, ``http.response.pathsend``): its body is not captured."""
    return {"response_body": {"omitted": "file response"}}


def new_exchange(method: str, path: str, query: str) -> Exchange:
    """An exchange stamped with the request's start time."""
    return Exchange(method, path or "/", query, time.time())
