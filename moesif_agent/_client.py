"""The Collector API client (runs on the worker thread).

Built on httpx's transport directly, not ``httpx.Client``: the agent's own uploads must not
add an INFO log line per batch to the host's logs, and must not be seen by the outgoing-call
capture that instruments ``httpx.Client``. Every call returns an :class:`Outcome`; nothing here
raises. Transient failures (connection errors, timeouts, 408, 429, 5xx) are retried with
exponential backoff and jitter, honouring ``Retry-After``, until the caller's deadline, or
until the caller's ``give_up`` says that waiting longer costs more than it saves (the transport
then puts the batch in its spool). Each attempt is reported to a :class:`~._health.Health`.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import logging
import os
import random
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from . import _lifecycle
from ._version import __version__

if TYPE_CHECKING:
    from ._health import Health
    from ._options import Options

logger = logging.getLogger(__name__)

USER_AGENT = f"moesif-agent-python/{__version__}"
CONFIG_ETAG_HEADER = "x-moesif-config-etag"
GZIP_LEVEL = 3  # as small as 5-6 on event JSON, at under half the CPU

_BACKOFF_BASE = 0.5
_BACKOFF_MAX = 30.0
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_AFTER_MAX = 600.0  # seconds
_GIVE_UP_POLL = 0.2  # seconds between two looks at ``give_up`` while waiting to retry


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one API call after its retries."""

    status: int | None  # HTTP status of the last attempt; None if no response was received
    error: str | None = None  # why the call failed, when it did
    config_etag: str | None = None
    content: bytes = b""
    attempts: int = 1
    etag: str | None = None
    retry_after: float | None = None  # seconds, from a 429/503's Retry-After

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in _RETRY_STATUSES or self.status >= 500


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), at most
    ``RETRY_AFTER_MAX``: a proxy's ``inf`` or year-9999 date must not stop delivery for good."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(RETRY_AFTER_MAX, max(0.0, seconds))


def _proxy_for(url: str) -> str | None:
    """The proxy the environment asks for (HTTPS_PROXY/HTTP_PROXY/NO_PROXY), if any."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


class CollectorClient:
    """Talks to one collector; implements the transport's ``Sender``.

    Used by one thread at a time (the agent's worker). Its connection pool is made anew in a
    forked child, whose parent's sockets must not be shared."""

    def __init__(self, options: Options, health: Health | None = None) -> None:
        self.base_uri = options.base_uri
        self.health = health
        self.headers = [
            (b"X-Moesif-Application-Id", options.application_id.encode("latin-1", "replace")),
            (b"User-Agent", USER_AGENT.encode()),
            (b"Accept", b"application/json"),
        ]
        self.timeout = {
            "connect": options.connect_timeout,
            "read": options.request_timeout,
            "write": options.request_timeout,
            "pool": options.connect_timeout,
        }
        self.max_retry_time = options.max_retry_time
        self._proxy = _proxy_for(self.base_uri)
        self._pool: httpx.HTTPTransport | None = None
        self._pool_pid = 0
        self._warm_pid = 0  # the process that made a call (so the lazy imports are done)
        self._wake = threading.Event()
        # A deadline that can move earlier while we wait (a shutdown with a timeout).
        self._deadline = float("inf")

    def stop_by(self, deadline: float) -> None:
        """No retry wait and no attempt may outlast ``deadline`` (monotonic): shutdown."""
        self._deadline = deadline
        self._wake.set()

    def after_fork_in_child(self) -> None:
        self._wake = threading.Event()
        self._deadline = float("inf")

    @property
    def transport(self) -> httpx.HTTPTransport:
        pid = os.getpid()
        if self._pool is None or self._pool_pid != pid:
            with _lifecycle.fork_guard:  # not forked while importing (see there)
                self._pool = httpx.HTTPTransport(
                    retries=0,
                    proxy=self._proxy,
                    limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
                    # httpcore writes headers and body apart: with Nagle, a collector that
                    # delays its ACKs (40 ms) would make every other batch wait for it.
                    socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                )
            self._pool_pid = pid
        return self._pool

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None or self._pool_pid != os.getpid():
            return
        try:
            pool.close()
        except Exception:  # closing sockets must never fail the caller
            logger.debug("moesif-agent: error closing the collector client", exc_info=True)

    # Endpoints

    def post_json(
        self,
        path: str,
        payload: bytes,
        *,
        gzipped: bool = False,
        retry: bool = True,
        give_up: Callable[[], bool] | None = None,
    ) -> Outcome:
        """POST JSON bytes, gzip-compressed here unless ``gzipped`` says they already are.

        With ``retry``, transient failures are retried until ``max_retry_time`` has passed or
        ``give_up()`` returns True (looked at between attempts)."""
        headers = [
            *self.headers,
            (b"Content-Type", b"application/json"),
            (b"Content-Encoding", b"gzip"),
        ]
        if not gzipped:
            payload = gzip.compress(payload, compresslevel=GZIP_LEVEL)
        if not retry:
            return self._attempt("POST", path, headers, payload, 1)
        return self._call("POST", path, headers, payload, give_up)

    def get(self, path: str, *, etag: str | None = None, retry: bool = True) -> Outcome:
        """GET with ``If-None-Match`` when ``etag`` is given (a 304 outcome: unchanged)."""
        headers = list(self.headers)
        if etag:
            headers.append((b"If-None-Match", etag.encode("latin-1", "replace")))
        if not retry:
            return self._attempt("GET", path, headers, None, 1)
        return self._call("GET", path, headers, None)

    # Machinery

    def _call(
        self,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        content: bytes | None,
        give_up: Callable[[], bool] | None = None,
    ) -> Outcome:
        deadline = time.monotonic() + self.max_retry_time
        attempt = 0
        while True:
            attempt += 1
            outcome = self._attempt(method, path, headers, content, attempt)
            if outcome.ok or not outcome.retryable or (give_up is not None and give_up()):
                return outcome
            delay = min(_BACKOFF_MAX, _BACKOFF_BASE * 2 ** (attempt - 1))
            delay = delay / 2 + random.uniform(0, delay / 2)
            if outcome.retry_after is not None:
                delay = outcome.retry_after
            limit = min(deadline, self._deadline)
            if time.monotonic() + delay >= limit:
                return outcome
            logger.debug(
                "moesif-agent: %s %s failed (%s); retry %d in %.2fs",
                method,
                path,
                outcome.error or outcome.status,
                attempt,
                delay,
            )
            if not self._sleep_until(time.monotonic() + delay, give_up):
                return outcome
            if time.monotonic() >= min(deadline, self._deadline):
                return outcome

    def _sleep_until(self, until: float, give_up: Callable[[], bool] | None = None) -> bool:
        """Wait until ``until``; False if ``give_up()`` said to stop waiting first. Wakes
        early if the deadline moves (shutdown), then sleeps again if it still allows."""
        while True:
            now = time.monotonic()
            end = min(until, self._deadline)
            if now >= end:
                return True
            if give_up is not None:
                if give_up():
                    return False
                end = min(end, now + _GIVE_UP_POLL)
            self._wake.wait(end - now)
            self._wake.clear()

    def _attempt(
        self,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        content: bytes | None,
        attempt: int,
    ) -> Outcome:
        timeout = dict(self.timeout)
        remaining = self._deadline - time.monotonic()
        if remaining < float("inf"):
            # During shutdown no single attempt may outlive the deadline.
            for key in timeout:
                timeout[key] = max(0.05, min(timeout[key], remaining))
        request = httpx.Request(
            method,
            self.base_uri + path,
            headers=headers,
            content=content,
            extensions={"timeout": timeout},
        )
        if self._warm_pid != os.getpid():
            with _lifecycle.fork_guard:  # the process's first call imports (see there)
                outcome = self._roundtrip(request, attempt)
            self._warm_pid = os.getpid()
        else:
            outcome = self._roundtrip(request, attempt)
        if self.health is not None:
            self.health.observe(method, path, outcome)
        return outcome

    def _roundtrip(self, request: httpx.Request, attempt: int) -> Outcome:
        try:
            response = self.transport.handle_request(request)
            try:
                body = response.read()
            finally:
                response.close()
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}", attempts=attempt)
        except Exception as exc:  # a broken proxy setting, a bad URL: report, never raise
            return Outcome(None, f"{type(exc).__name__}: {exc}", attempts=attempt)
        status = response.status_code
        error = None
        if not 200 <= status < 300 and status != 304:
            error = f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"
        return Outcome(
            status,
            error,
            config_etag=response.headers.get(CONFIG_ETAG_HEADER),
            content=body,
            attempts=attempt,
            etag=response.headers.get("etag"),
            retry_after=(
                retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
            ),
        )


class MemorySink:
    """A ``Sender`` that keeps what would have been sent (``dry_run=True``): nothing leaves
    the process, and the events can be read back exactly as they would have gone out."""

    base_uri = "memory:"

    def __init__(self) -> None:
        self.items: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def post_json(self, path: str, payload: bytes, *, gzipped: bool = False, **_: Any) -> Outcome:
        items = json.loads(gzip.decompress(payload) if gzipped else payload)
        with self._lock:
            self.items.setdefault(path, []).extend(items)
        return Outcome(201)

    def get(self, path: str, *, etag: str | None = None, retry: bool = True) -> Outcome:
        return Outcome(404, "dry run: no collector")

    def read(self, path: str) -> list[Any]:
        with self._lock:
            return list(self.items.get(path, ()))

    def stop_by(self, deadline: float) -> None:
        pass

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def close(self) -> None:
        pass
