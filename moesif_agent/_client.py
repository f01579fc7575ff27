"""The Collector API client (runs on the worker thread).

Built on httpx's transport directly, not ``httpx.Client``: the agent's own uploads must not
add an INFO log line per batch to the host's logs, and must not be seen by the outgoing-call
capture that instruments ``httpx.Client``. Every call returns an :class:`Outcome`; nothing here
raises. Transient failures (connection errors, timeouts, 408, 429, 5xx) are retried with
exponential backoff and jitter, honouring ``Retry-After``, until the caller's deadline.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import logging
import os
import random
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from ._version import __version__

if TYPE_CHECKING:
    from ._options import Options

logger = logging.getLogger(__name__)

USER_AGENT = f"moesif-agent-python/{__version__}"
CONFIG_ETAG_HEADER = "x-moesif-config-etag"
GZIP_LEVEL = 3  # as small as 5-6 on event JSON, at under half the CPU

_BACKOFF_BASE = 0.5
_BACKOFF_MAX = 30.0
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one API call after its retries."""

    status: int | None  # HTTP status of the last attempt; None if no response was received
    error: str | None = None  # why the call failed, when it did
    config_etag: str | None = None
    content: bytes = b""
    attempts: int = 1
    etag: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in _RETRY_STATUSES or self.status >= 500


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


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

    def __init__(self, options: Options) -> None:
        self.base_uri = options.base_uri
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
            self._pool = httpx.HTTPTransport(
                retries=0,
                proxy=self._proxy,
                limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
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

    def post_json(self, path: str, payload: bytes, *, compress: bool = True) -> Outcome:
        """POST JSON bytes (gzip-compressed unless ``compress`` is false), with retries."""
        headers = [*self.headers, (b"Content-Type", b"application/json")]
        if compress:
            payload = gzip.compress(payload, compresslevel=GZIP_LEVEL)
            headers.append((b"Content-Encoding", b"gzip"))
        return self._call("POST", path, headers, payload)

    def get(self, path: str, *, etag: str | None = None, retry: bool = True) -> Outcome:
        """GET with ``If-None-Match`` when ``etag`` is given (a 304 outcome: unchanged)."""
        headers = list(self.headers)
        if etag:
            headers.append((b"If-None-Match", etag.encode("latin-1", "replace")))
        if not retry:
            return self._attempt("GET", path, headers, None, 1)[0]
        return self._call("GET", path, headers, None)

    # Machinery

    def _call(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], content: bytes | None
    ) -> Outcome:
        deadline = time.monotonic() + self.max_retry_time
        attempt = 0
        while True:
            attempt += 1
            outcome, wait_hint = self._attempt(method, path, headers, content, attempt)
            if outcome.ok or not outcome.retryable:
                return outcome
            delay = min(_BACKOFF_MAX, _BACKOFF_BASE * 2 ** (attempt - 1))
            delay = delay / 2 + random.uniform(0, delay / 2)
            if wait_hint is not None:
                delay = max(wait_hint, 0.0)
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
            self._sleep_until(time.monotonic() + delay)
            if time.monotonic() >= min(deadline, self._deadline):
                return outcome

    def _sleep_until(self, until: float) -> None:
        # Wakes early if the deadline moves (shutdown), then sleeps again if it still allows.
        while True:
            now = time.monotonic()
            end = min(until, self._deadline)
            if now >= end:
                return
            self._wake.wait(end - now)
            self._wake.clear()

    def _attempt(
        self,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        content: bytes | None,
        attempt: int,
    ) -> tuple[Outcome, float | None]:
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
        try:
            response = self.transport.handle_request(request)
            try:
                body = response.read()
            finally:
                response.close()
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}", attempts=attempt), None
        except Exception as exc:  # a broken proxy setting, a bad URL: report, never raise
            return Outcome(None, f"{type(exc).__name__}: {exc}", attempts=attempt), None
        status = response.status_code
        error = None
        if not 200 <= status < 300 and status != 304:
            error = f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"
        outcome = Outcome(
            status,
            error,
            config_etag=response.headers.get(CONFIG_ETAG_HEADER),
            content=body,
            attempts=attempt,
            etag=response.headers.get("etag"),
        )
        hint = retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
        return outcome, hint


class MemorySink:
    """A ``Sender`` that keeps what would have been sent (``dry_run=True``): nothing leaves
    the process, and the events can be read back exactly as they would have gone out."""

    base_uri = "memory:"

    def __init__(self) -> None:
        self.items: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def post_json(self, path: str, payload: bytes) -> Outcome:
        items = json.loads(payload)
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
