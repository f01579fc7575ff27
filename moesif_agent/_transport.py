"""Bounded queues and the one background worker that delivers them (worker thread).

Request threads only ever ``put``: one length check and one ``deque.append``, plus an
``Event.set()`` when a batch is full. The worker wakes when a batch is full, when the oldest
item may be ``batch_max_time`` old, or on flush/shutdown, and then sends every batch that is
ready (no per-tick ceiling). The worker starts lazily on the first put, in the process that
puts: after a fork the child starts its own worker (``os.register_at_fork``), so prefork
servers such as ``gunicorn --preload`` work. At exit, an ``atexit`` hook flushes with a deadline.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from . import _guard, _lifecycle
from ._client import Outcome
from ._queues import Channel, Counter

if TYPE_CHECKING:
    from ._options import Options

logger = logging.getLogger(__name__)

# Seconds of encoding between two releases of the GIL while the app is busy. Left alone, the
# worker keeps the GIL for whole switch intervals (5 ms) while a request thread of the app
# waits for it (a scratch experiment with a CPU-bound app thread: ~120 waits over 3 ms in 3 s
# without releases, 1-60 with them). A release
# (``time.sleep(0)``) costs ~100 µs on a small VM even when nobody is waiting, so it is paced
# by time, and skipped while no request thread queues anything (a backlog drained at exit or
# after an outage, an idle app).
_YIELD_AFTER = 0.001


class Sender(Protocol):
    """Where batches go: the collector client, or the dry-run memory sink. Called from the
    worker thread only; never raises (failures are Outcomes)."""

    base_uri: str

    def post_json(self, path: str, payload: bytes) -> Outcome: ...

    def get(self, path: str, *, etag: str | None = None, retry: bool = True) -> Outcome: ...

    def stop_by(self, deadline: float) -> None:
        """Shutdown: no wait and no attempt may outlast ``deadline`` (monotonic)."""

    def after_fork_in_child(self) -> None: ...

    def close(self) -> None: ...


class _Marker:
    """A flush request: set by the worker once everything queued before it was handled."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = True


class Transport:
    """Queues plus the worker thread. One per agent."""

    def __init__(
        self,
        options: Options,
        channels: list[Channel],
        sender: Sender,
        *,
        on_outcome: Callable[[Outcome], None] | None = None,
        periodic: Callable[[], None] | None = None,
    ) -> None:
        """``on_outcome`` is called on the worker after each batch response, ``periodic`` on
        every wake-up (the remote config refresh)."""
        self.options = options
        self.channels = {channel.name: channel for channel in channels}
        self.batch_size = options.batch_size
        self.batch_max_bytes = options.batch_max_bytes
        self.sender = sender
        self.on_outcome = on_outcome
        self.periodic = periodic
        self.after_fork_in_child()
        _lifecycle.register_transport(self)

    def after_fork_in_child(self) -> None:
        """A fresh state (also at construction): the parent delivers what it had queued."""
        self.sender.after_fork_in_child()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._markers: list[_Marker] = []
        self._stopping = False
        self._stopped = False
        self._deadline = float("inf")
        self._abandoned = False  # shutdown gave up waiting for the worker
        self._in_flight = 0  # items taken from a queue and not yet sent or dropped
        self.sent: dict[str, int] = dict.fromkeys(self.channels, 0)
        self.dropped: dict[str, int] = {}
        self.retries = 0
        self.batches = 0
        self.last_error: str | None = None
        for channel in self.channels.values():
            channel.queue.clear()
            channel.dropped_full = Counter()

    # Request thread ----------------------------------------------------------------------------

    def put(self, channel: Channel, item: Any) -> bool:
        """Queue ``item``; never blocks. False (and counted) when the queue is full or closed."""
        queue = channel.queue
        if len(queue) >= channel.maxsize or self._stopping:
            channel.dropped_full.increment()
            return False
        queue.append(item)
        if self._pid != os.getpid():
            self._start()
        if len(queue) >= self.batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid() or self._stopping:
                return
            thread = threading.Thread(target=self._run, name="moesif-agent-worker", daemon=True)
            thread.start()
            self._thread = thread
            self._pid = os.getpid()

    # Any thread ----------------------------------------------------------------------------------

    def pending(self) -> int:
        return sum(len(channel.queue) for channel in self.channels.values())

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call was delivered (True) or given up."""
        if self._pid != os.getpid() or self._stopped:
            return self.pending() == 0
        marker = _Marker()
        with self._lock:
            self._markers.append(marker)
        self._wake.set()
        if not marker.done.wait(timeout):
            return False
        return marker.ok

    def shutdown(self, timeout: float | None = None) -> None:
        """Deliver what is queued within ``timeout`` seconds, then stop the worker. Idempotent."""
        self.begin_shutdown(timeout)
        self.join()

    def begin_shutdown(self, timeout: float | None = None) -> None:
        if timeout is None:
            timeout = self.options.shutdown_timeout
        with self._lock:
            if not self._stopping:
                self._stopping = True
                self._deadline = time.monotonic() + max(0.0, timeout)
                self.sender.stop_by(self._deadline)
        self._wake.set()

    def join(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(max(0.0, self._deadline - time.monotonic()) + 0.25)
        if thread is not None and thread.is_alive():
            with self._lock:
                if not self._abandoned:
                    # The worker is stuck in a call that outlives the deadline: what it holds
                    # and what is still queued are counted as lost now, and nothing it does
                    # later is counted again.
                    self._drop("shutdown", self._in_flight + self.pending())
                    for channel in self.channels.values():
                        channel.queue.clear()
                    self._abandoned = True
        else:
            self._count_leftovers("shutdown")
        self._stopped = True

    # Worker thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        sender = self.sender
        try:
            while True:
                if not self._ready():
                    self._wake.wait(self.options.batch_max_time)
                self._wake.clear()
                with self._lock:
                    markers, self._markers = self._markers, []
                for channel in self.channels.values():
                    self._drain(sender, channel, len(channel.queue), markers)
                if self.periodic is not None and not self._stopping:
                    with _guard.guard("remote config refresh"):
                        self.periodic()
                for marker in markers:
                    marker.done.set()
                if self._stopping and (self.pending() == 0 or self._expired()):
                    break
        except BaseException:  # the worker must never die silently
            logger.exception("moesif-agent: the delivery worker stopped on an internal error")
            raise
        finally:
            self._count_leftovers("shutdown")
            with self._lock:
                markers, self._markers = self._markers, []
            for marker in markers:
                marker.ok = False
                marker.done.set()
            sender.close()

    def _expired(self) -> bool:
        return time.monotonic() >= self._deadline

    def _ready(self) -> bool:
        return self._stopping or any(
            len(channel.queue) >= self.batch_size for channel in self.channels.values()
        )

    def _count_leftovers(self, reason: str) -> None:
        for channel in self.channels.values():
            left = len(channel.queue)
            if left and self._pid == os.getpid():
                channel.queue.clear()
                with self._lock:
                    self._drop(reason, left)

    def _drop(self, reason: str, count: int, *, in_flight: bool = False) -> None:
        if self._abandoned or not count:
            return
        self.dropped[reason] = self.dropped.get(reason, 0) + count
        if in_flight:
            self._in_flight -= count

    def _drain(self, sender: Sender, channel: Channel, limit: int, markers: list[_Marker]) -> None:
        queue = channel.queue
        while limit > 0 and queue:
            if self._stopping and self._expired():
                return
            take = min(limit, self.batch_size)
            limit -= take
            items = []
            for _ in range(take):
                try:
                    items.append(queue.popleft())
                except IndexError:  # a forked child cleared it; nothing left
                    break
            channel.popped += len(items)
            with self._lock:
                self._in_flight += len(items)
            encoded = self._encode(channel, items)
            if encoded:
                ok = self._send(sender, channel, encoded)
                if not ok:
                    for marker in markers:
                        marker.ok = False

    def _encode(self, channel: Channel, items: list[Any]) -> list[bytes]:
        encoded = []
        encode = channel.encode
        busy = channel.app_active()  # queued anything since our last look (e.g. during a POST)
        clock = time.perf_counter
        next_yield = clock() + _YIELD_AFTER
        for item in items:
            if clock() >= next_yield:
                if busy or channel.app_active():
                    busy = True
                    time.sleep(0)
                next_yield = clock() + _YIELD_AFTER
            try:
                encoded.append(encode(item))
            except Exception as exc:
                reason = getattr(exc, "reason", None)
                if reason is None:
                    reason = "encode_error"
                    _guard.log_once(
                        "encode:" + channel.name,
                        logging.ERROR,
                        "moesif-agent: could not encode a %s item (dropped; logged once)",
                        channel.name,
                        exc_info=True,
                    )
                with self._lock:
                    self._drop(reason, 1, in_flight=True)
        return encoded

    def _send(self, sender: Sender, channel: Channel, encoded: list[bytes]) -> bool:
        """POST ``encoded`` in as few requests as the byte limit allows. True if all arrived."""
        ok = True
        chunk: list[bytes] = []
        size = 2
        for data in encoded:
            if chunk and size + len(data) + 1 > self.batch_max_bytes:
                ok = self._post(sender, channel, chunk) and ok
                chunk, size = [], 2
            chunk.append(data)
            size += len(data) + 1
        if chunk:
            ok = self._post(sender, channel, chunk) and ok
        return ok

    def _post(self, sender: Sender, channel: Channel, chunk: list[bytes]) -> bool:
        payload = b"[" + b",".join(chunk) + b"]"
        outcome = sender.post_json(channel.path, payload)
        self.batches += 1
        self.retries += outcome.attempts - 1
        if self.on_outcome is not None:
            with _guard.guard("collector response hook"):
                self.on_outcome(outcome)
        if outcome.ok:
            with self._lock:
                if not self._abandoned:
                    self.sent[channel.name] += len(chunk)
                    self._in_flight -= len(chunk)
            return True
        if outcome.status == 413 and len(chunk) > 1:
            half = len(chunk) // 2
            first = self._post(sender, channel, chunk[:half])
            return self._post(sender, channel, chunk[half:]) and first
        self.last_error = f"POST {channel.path}: {outcome.error}"
        if outcome.retryable:
            reason = "shutdown" if self._stopping and self._expired() else "retries_exhausted"
        else:
            reason = "rejected"
        with self._lock:
            self._drop(reason, len(chunk), in_flight=True)
        _guard.log_once(
            f"post:{channel.path}:{outcome.status}",
            logging.WARNING,
            "moesif-agent: %d %s not delivered to %s%s: %s%s (logged once per cause)",
            len(chunk),
            channel.name,
            sender.base_uri,
            channel.path,
            outcome.error,
            _hint(outcome.status),
        )
        return False

    def stats(self) -> dict[str, Any]:
        dropped = dict(self.dropped)
        for channel in self.channels.values():
            full = channel.dropped_full.value
            if full:
                key = "queue_full" if channel.name == "events" else f"{channel.name}_queue_full"
                dropped[key] = dropped.get(key, 0) + full
        return {
            "queued": self.pending(),
            "sent": self.sent.get("events", 0),
            "sent_by_kind": dict(self.sent),
            "dropped": dropped,
            "retries": self.retries,
            "batches": self.batches,
            "last_error": self.last_error,
        }


def _hint(status: int | None) -> str:
    if status == 401:
        return " (check application_id / MOESIF_APPLICATION_ID)"
    if status == 402:
        return " (the collector says the subscription is not active)"
    if status is None:
        return " (is the collector reachable at base_uri?)"
    return ""
