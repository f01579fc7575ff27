"""Bounded queues and the one background worker that delivers them.

Request threads only ever ``put``: two bound checks and one ``deque.append``, plus an
``Event.set()`` when a batch is full. The worker starts with the agent (its first act is the
collector's config, so that events recorded before it arrives are sampled by it), wakes when
a batch is full, when the oldest item may be ``batch_max_time`` old, when the spool needs it,
or on flush/shutdown, and then sends every batch that is ready (no per-tick ceiling). After a
fork the child starts its own worker on first use (``os.register_at_fork``), so prefork
servers such as ``gunicorn --preload`` work. At exit, an ``atexit`` hook flushes with a
deadline; what the collector cannot take by then is spooled, not lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _guard, _lifecycle
from ._delivery import Delivery, Sender, Tally
from ._health import short_id
from ._queues import Channel, Counter
from ._spool import Spool

if TYPE_CHECKING:
    from ._client import Outcome
    from ._options import Options

__all__ = ["Sender", "Transport"]

logger = logging.getLogger(__name__)

# Of a flush's or shutdown's time: the share (at most the maximum) kept to write to the spool
# what the collector did not take by then
_SPOOL_RESERVE = 0.25
_SPOOL_RESERVE_MAX = 1.0


def _reserve(timeout: float | None) -> float:
    """Of a flush's or shutdown's time, what is kept to spool what the collector did not take."""
    if timeout is None:
        return 0.0
    return min(_SPOOL_RESERVE_MAX, max(0.0, timeout) * _SPOOL_RESERVE)


class _Marker:
    """A flush request: set by the worker once everything queued before it was handled."""

    __slots__ = ("deadline", "done", "ok")  # deadline: when to spool rather than retry

    def __init__(self, deadline: float) -> None:
        self.done = threading.Event()
        self.ok = True
        self.deadline = deadline


_SLICE = 16  # items encoded per wake of the worker while requests keep coming


def _captured_at(item: Any) -> float:
    """The monotonic time an item was captured (its response's end), or now."""
    ex = getattr(item, "ex", item)  # an exchange held for the first config
    finished = getattr(ex, "response_time", None) or getattr(ex, "request_time", None)
    now = time.monotonic()
    if isinstance(finished, float):
        return now - max(0.0, time.time() - finished)
    return now


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
        every wake-up and once before anything else (the remote config fetch)."""
        self.options = options
        self.channels = {channel.name: channel for channel in channels}
        self.batch_size = options.batch_size
        # The worker encodes as soon as a slice is queued and POSTs once a batch is encoded:
        # each hold of the GIL stays short (a slice) while each POST carries a whole batch.
        self.slice = min(self.batch_size, _SLICE)
        self.sender = sender
        self.on_outcome = on_outcome
        self.periodic = periodic
        self.spool = Spool.from_options(options)
        self.after_fork_in_child()
        _lifecycle.register_transport(self)

    def after_fork_in_child(self) -> None:
        """A fresh state (also at construction): the parent delivers what it had queued."""
        self.sender.after_fork_in_child()
        if self.spool is not None:
            self.spool.after_fork_in_child()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._markers: list[_Marker] = []
        self._flush_by = float("inf")  # the earliest deadline of a flush not answered yet
        self._stopping = False
        self._stopped = False
        self._deadline = float("inf")
        self.tally = Tally(list(self.channels))
        self.delivery = Delivery(
            self.options, self.sender, self.channels, self.tally, self.spool, self.on_outcome
        )
        self.delivery.expired = self._expired
        self.delivery.hurry = self._hurry
        for channel in self.channels.values():
            channel.clear()
            channel.ready = []  # the parent sends what it had encoded
            channel.ready_bytes = 0
            channel.dropped_full = Counter()
            channel.dropped_bytes = Counter()

    # Request thread ----------------------------------------------------------------------------

    def put(self, channel: Channel, item: Any, size: int) -> bool:
        """Queue ``item`` (``size``: its estimated bytes); never blocks. False (and counted)
        when the queue is full by count or bytes, or closed."""
        queue = channel.queue
        if len(queue) >= channel.maxsize or self._stopping:
            channel.dropped_full.increment()
            return False
        if channel.queued_bytes + size > channel.max_bytes:
            channel.dropped_bytes.increment()
            return False
        queue.append(item)
        channel.queued_bytes += size
        if self._pid != _lifecycle.pid:
            self.start()
        if len(queue) >= self.slice and not self._wake.is_set():
            self._wake.set()
        return True

    def start(self) -> None:
        """Start the worker in this process, unless it runs or the transport was shut down."""
        with self._lock:
            if self._pid == os.getpid() or self._stopping:
                return
            thread = threading.Thread(target=self._run, name="moesif-agent-worker", daemon=True)
            thread.start()
            self._thread = thread
            self._pid = os.getpid()

    # Any thread ----------------------------------------------------------------------------------

    def pending(self) -> int:
        return sum(len(channel.queue) + len(channel.ready) for channel in self.channels.values())

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call was delivered (True) or given up,
        and the first config fetch has happened."""
        if self._stopped:
            return self.pending() == 0
        self.start()
        deadline = float("inf") if timeout is None else time.monotonic() + max(0.0, timeout)
        marker = _Marker(deadline - _reserve(timeout) if self.spool is not None else deadline)
        with self._lock:
            self._markers.append(marker)
            self._flush_by = min(self._flush_by, marker.deadline)
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
                self.delivery.stopping = True
                timeout = max(0.0, timeout)
                self._deadline = time.monotonic() + timeout
                reserve = 0.0
                if self.spool is not None and not self.spool.disabled:
                    reserve = _reserve(timeout)
                self.sender.stop_by(self._deadline - reserve)
        self._wake.set()

    def join(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(max(0.0, self._deadline - time.monotonic()) + 0.25)
        if thread is not None and thread.is_alive():
            # The worker is stuck in a call that outlives the deadline: what it holds and what
            # is still queued are counted as lost now, and nothing it does later is counted.
            with self.tally.lock:
                abandoned = self.tally.abandoned
            if not abandoned:
                queued = sum(channel.clear() for channel in self.channels.values())
                self.tally.abandon(queued)
        else:
            self._count_leftovers("shutdown")
        self._stopped = True

    # Worker thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        delivery = self.delivery
        try:
            self._started()
            while True:
                if not self._ready():
                    self._wake.wait(delivery.wait(self._due()))
                self._wake.clear()
                with self._lock:
                    markers, self._markers = self._markers, []
                for channel in self.channels.values():
                    self._drain(channel, len(channel.queue), markers)
                if not self._stopping:
                    self._tick()
                    with _guard.guard("spool"):
                        delivery.resend()
                with self._lock:
                    self._flush_by = min((m.deadline for m in self._markers), default=float("inf"))
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
            self.sender.close()

    def _started(self) -> None:
        """Say where events go (once per process), then fetch the config before taking any
        event: what was recorded before it arrived is sampled by it."""
        options = self.options
        spool = self.spool
        _guard.log_once(
            f"sending:{os.getpid()}:{options.application_id}:{options.base_uri}",
            logging.INFO,
            "moesif-agent: sending events for application %s to %s (spool: %s)",
            short_id(options.application_id),
            self.sender.base_uri,
            "off" if spool is None else f"{spool.dirs[0]}, up to {spool.max_bytes} bytes",
        )
        self._tick()

    def _tick(self) -> None:
        if self.periodic is not None and not self._stopping:
            with _guard.guard("remote config refresh"):
                self.periodic()

    def _expired(self) -> bool:
        return time.monotonic() >= self._deadline

    def _hurry(self) -> bool:
        """A flush is waiting, and retrying longer would miss its deadline: spool instead."""
        return time.monotonic() >= self._flush_by

    def _ready(self) -> bool:
        return self._stopping or any(
            len(channel.queue) >= self.slice for channel in self.channels.values()
        )

    def _due(self) -> float:
        """Seconds until an encoded batch is due (``batch_max_time`` after its oldest item)."""
        wait = self.options.batch_max_time
        now = time.monotonic()
        for channel in self.channels.values():
            if channel.ready:
                wait = min(wait, max(0.0, channel.ready_since + wait - now))
        return wait

    def _count_leftovers(self, reason: str) -> None:
        for channel in self.channels.values():
            if self._pid != os.getpid():
                continue
            if channel.queue:
                self.tally.drop(reason, channel.clear(), in_flight=False)
            if channel.ready:
                self.tally.drop(reason, len(channel.ready))
                channel.ready = []
                channel.ready_bytes = 0

    def _drain(self, channel: Channel, limit: int, markers: list[_Marker]) -> None:
        """Encode what is queued, a slice at a time, and send each full batch; send what is
        encoded anyway when it is due, flushed or shut down."""
        delivery = self.delivery
        max_bytes = self.options.batch_max_bytes
        while limit > 0 and channel.queue:
            if self._stopping and self._expired():
                break
            room = self.batch_size - len(channel.ready)
            items = channel.take(min(limit, self.slice, room), max_bytes - channel.ready_bytes)
            limit -= len(items)
            if items:
                if not channel.ready:
                    channel.ready_since = _captured_at(items[0])
                encoded = delivery.encode(channel, items)
                channel.ready += encoded
                channel.ready_bytes += sum(map(len, encoded))
            if len(channel.ready) >= self.batch_size or channel.ready_bytes >= max_bytes:
                self._send_ready(channel, markers)
        if channel.ready and (
            markers
            or self._stopping
            or time.monotonic() - channel.ready_since >= self.options.batch_max_time
        ):
            self._send_ready(channel, markers)

    def _send_ready(self, channel: Channel, markers: list[_Marker]) -> None:
        ready, channel.ready = channel.ready, []
        channel.ready_bytes = 0
        if self._stopping and self._expired():
            self.tally.drop("shutdown", len(ready))
        elif not self.delivery.send(channel, ready):
            for marker in markers:
                marker.ok = False

    def stats(self) -> dict[str, Any]:
        tally = self.tally
        with tally.lock:
            dropped = dict(tally.dropped)
            sent = dict(tally.sent)
        for channel in self.channels.values():
            prefix = "" if channel.name == "events" else f"{channel.name}_"
            for key, counter in (
                ("queue_full", channel.dropped_full),
                ("queue_full_bytes", channel.dropped_bytes),
            ):
                if counter.value:
                    dropped[prefix + key] = dropped.get(prefix + key, 0) + counter.value
        recovery = self.delivery.recovery
        return {
            "queued": self.pending(),
            "queued_bytes": sum(channel.queued_bytes for channel in self.channels.values()),
            "sent": sent.get("events", 0),
            "sent_by_kind": sent,
            "dropped": dropped,
            "retries": self.delivery.retries,
            "batches": self.delivery.batches,
            "last_error": self.delivery.last_error,
            "spool": recovery.stats() if recovery is not None else None,
        }
