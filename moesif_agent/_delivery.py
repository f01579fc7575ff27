"""From items taken off a queue to the collector (worker thread).

Items are encoded, grouped into POSTs by bytes, gzip-compressed once and sent. What the
collector refuses as a whole (400, 413) is split in halves until the bad item is alone, so
one bad event costs only itself. What it cannot take now (no answer, 5xx, 429 past the retry
budget) goes to the spool through :class:`~._recovery.Recovery`, which also sends spooled
batches again once the collector answers; without a spool it is dropped and counted.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from . import _guard
from ._client import GZIP_LEVEL, Outcome
from ._health import hint
from ._queues import Skip
from ._recovery import Recovery

if TYPE_CHECKING:
    from ._options import Options
    from ._queues import Channel
    from ._spool import Claim, Spool

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

    def post_json(
        self,
        path: str,
        payload: bytes,
        *,
        gzipped: bool = False,
        retry: bool = True,
        give_up: Callable[[], bool] | None = None,
    ) -> Outcome: ...

    def get(self, path: str, *, etag: str | None = None, retry: bool = True) -> Outcome: ...

    def stop_by(self, deadline: float) -> None:
        """Shutdown: no wait and no attempt may outlast ``deadline`` (monotonic)."""

    def after_fork_in_child(self) -> None: ...

    def close(self) -> None: ...


class Tally:
    """What became of the items taken off the queues: sent, dropped by reason, and what the
    worker still holds (neither yet). Under one lock, so that a shutdown that gives up on a stuck
    worker counts what it held once, and nothing the worker does afterwards."""

    def __init__(self, names: list[str]) -> None:
        self.lock = threading.Lock()
        self.sent = dict.fromkeys(names, 0)
        self.dropped: dict[str, int] = {}
        self.in_flight = 0
        self.abandoned = False

    def take(self, count: int) -> None:
        with self.lock:
            self.in_flight += count

    def delivered(self, name: str, count: int) -> None:
        with self.lock:
            if not self.abandoned:
                self.sent[name] = self.sent.get(name, 0) + count
                self.in_flight -= count

    def drop(self, reason: str, count: int, *, in_flight: bool = True) -> None:
        with self.lock:
            if self.abandoned or not count:
                return
            self.dropped[reason] = self.dropped.get(reason, 0) + count
            if in_flight:
                self.in_flight -= count

    def settle(self, count: int) -> None:
        """Items no longer held without being sent or dropped: skipped, or in the spool."""
        with self.lock:
            if not self.abandoned:
                self.in_flight -= count

    def abandon(self, queued: int) -> None:
        with self.lock:
            if not self.abandoned:
                if self.in_flight + queued:
                    self.dropped["shutdown"] = (
                        self.dropped.get("shutdown", 0) + self.in_flight + queued
                    )
                self.abandoned = True


class Delivery:
    """The worker's handling of batches: encode, POST, split, spool or drop."""

    def __init__(
        self,
        options: Options,
        sender: Sender,
        channels: dict[str, Channel],
        tally: Tally,
        spool: Spool | None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.options = options
        self.sender = sender
        self.channels = channels
        self.tally = tally
        self.on_outcome = on_outcome
        self.batch_max_bytes = options.batch_max_bytes
        self.recovery = Recovery(spool, tally) if spool is not None else None
        self.retries = 0
        self.batches = 0
        self.last_error: str | None = None
        self.stopping = False
        self.expired: Callable[[], bool] = lambda: False
        self.hurry: Callable[[], bool] = lambda: False
        self._splits = 0  # requests a split of the current batch may still make

    def give_up(self) -> bool:
        """Stop retrying the batch in hand and spool it: memory is filling meanwhile, or a
        flush would miss its deadline (the last flush before an exit, when it is that)."""
        return self.hurry() or any(channel.pressed() for channel in self.channels.values())

    # Taken items -------------------------------------------------------------------------------

    def encode(self, channel: Channel, items: list[Any]) -> list[bytes]:
        """Encode items taken off ``channel`` (they are in flight from now on)."""
        self.tally.take(len(items))
        encoded = self._encode(channel, items)
        items.clear()  # the captured exchanges are no longer needed
        return encoded

    def send(self, channel: Channel, encoded: list[bytes]) -> bool:
        """Send encoded items of ``channel``; True if all arrived (or went to the spool)."""
        return self._send(channel, encoded) if encoded else True

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
            except Skip:
                self.tally.settle(1)
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
                self.tally.drop(reason, 1)
        return encoded

    def _send(self, channel: Channel, encoded: list[bytes]) -> bool:
        """POST ``encoded`` in as few requests as the byte limit allows. True if all arrived."""
        ok = True
        chunk: list[bytes] = []
        size = 2
        for data in encoded:
            if chunk and size + len(data) + 1 > self.batch_max_bytes:
                ok = self._post_batch(channel, chunk) and ok
                chunk, size = [], 2
            chunk.append(data)
            size += len(data) + 1
        if chunk:
            ok = self._post_batch(channel, chunk) and ok
        return ok

    def _post_batch(self, channel: Channel, chunk: list[bytes]) -> bool:
        # Halving isolates one bad item in 2*log2(n) requests; a collector that refuses
        # every item must not cost 2n of them.
        self._splits = 4 * len(chunk).bit_length() + 8
        return self._post(channel, chunk)

    def _post(self, channel: Channel, chunk: list[bytes]) -> bool:
        body = gzip.compress(b"[" + b",".join(chunk) + b"]", compresslevel=GZIP_LEVEL)
        recovery = self.recovery
        if (
            recovery is not None
            and recovery.outage
            and recovery.store(channel.name, body, len(chunk))
        ):
            return False  # the collector is down: not worth a try per batch
        give_up = self.give_up if recovery is not None and recovery.usable else None
        outcome = self._call(channel, len(chunk), body, give_up=give_up)
        if outcome.ok:
            self.tally.delivered(channel.name, len(chunk))
            return True
        return self._refused(channel, chunk, body, outcome)

    def _refused(self, channel: Channel, chunk: list[bytes], body: bytes, outcome: Outcome) -> bool:
        status = outcome.status
        if status in (400, 413) and len(chunk) > 1 and self._splits > 0:
            self._splits -= 2
            half = len(chunk) // 2
            first = self._post(channel, chunk[:half])
            return self._post(channel, chunk[half:]) and first
        self.last_error = f"POST {channel.path}: {outcome.error}"
        recovery = self.recovery
        if outcome.retryable and recovery is not None and recovery.usable:
            recovery.failed(outcome)
            if recovery.store(channel.name, body, len(chunk)):
                return False
        self._drop(channel, len(chunk), outcome)
        return False

    def _drop(self, channel: Channel, count: int, outcome: Outcome) -> None:
        status = outcome.status
        if outcome.retryable:
            reason = "shutdown" if self.stopping and self.expired() else "retries_exhausted"
        else:
            reason = "rejected"
        self.tally.drop(reason, count)
        _guard.log_once(
            f"post:{channel.path}:{status}",
            logging.WARNING,
            "moesif-agent: %d %s dropped, not delivered to %s%s: %s (%s; counted in "
            "stats()['dropped'], logged once per cause)",
            count,
            channel.name,
            self.sender.base_uri,
            channel.path,
            outcome.error,
            hint(status, outcome.error),
        )

    def _call(
        self,
        channel: Channel,
        count: int,
        body: bytes,
        *,
        retry: bool = True,
        give_up: Callable[[], bool] | None = None,
    ) -> Outcome:
        started = time.perf_counter()
        outcome = self.sender.post_json(
            channel.path, body, gzipped=True, retry=retry, give_up=give_up
        )
        self.batches += 1
        self.retries += outcome.attempts - 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "moesif-agent: POST %s: %d %s, %d bytes gzipped, %s in %.0f ms",
                channel.path,
                count,
                channel.name,
                len(body),
                outcome.status if outcome.status is not None else outcome.error,
                (time.perf_counter() - started) * 1000,
            )
        if self.on_outcome is not None:
            with _guard.guard("collector response hook"):
                self.on_outcome(outcome)
        return outcome

    # The spool ---------------------------------------------------------------------------------

    def resend(self) -> None:
        """Send the oldest spooled batch, if one is due (paced by ``Recovery``)."""
        recovery = self.recovery
        claim = recovery.due() if recovery is not None else None
        if recovery is None or claim is None:
            return
        entry = claim.entry
        channel = self.channels.get(entry.channel)
        if channel is None:  # written by a version with other channels: not ours to send
            recovery.set_aside(claim)
            return
        self.tally.take(entry.count)
        started = time.monotonic()
        outcome = self._call(channel, entry.count, claim.body, retry=False)
        if outcome.ok:
            self.tally.delivered(channel.name, entry.count)
        elif outcome.status in (400, 413):
            self._split_spooled(channel, claim, outcome)
        elif outcome.retryable:
            self.tally.settle(entry.count)
            recovery.release(claim, outcome)
            return
        else:
            self.last_error = f"POST {channel.path}: {outcome.error}"
            self._drop(channel, entry.count, outcome)
        recovery.sent(claim, time.monotonic() - started)

    def _split_spooled(self, channel: Channel, claim: Claim, outcome: Outcome) -> None:
        """A spooled batch the collector refuses as a whole: split it like a live one."""
        try:
            items = [
                json.dumps(item, separators=(",", ":")).encode()
                for item in json.loads(claim.payload)
            ]
        except (ValueError, RecursionError):
            items = []
        self.tally.drop("rejected", claim.entry.count - len(items))
        if items:
            self._splits = 4 * len(items).bit_length() + 8
            self._refused(channel, items, claim.body, outcome)

    def wait(self, default: float) -> float:
        """How long the worker may sleep before the spool needs it."""
        if self.recovery is None or self.stopping:
            return default
        return min(default, self.recovery.wait())
