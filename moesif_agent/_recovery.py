"""When batches go to the spool, and when and how fast they come back from it (worker thread).

Two states. Healthy: batches are POSTed (and retried in memory for ``max_retry_time``); a
batch that still fails is spooled, and the state turns to outage. Outage: new batches go
straight to the spool (trying each for ``max_retry_time`` would hold them in memory, where a
restart loses them), and the oldest spooled batch probes the collector, with backoff. The
first probe that gets a 2xx ends the outage. While there are spooled files and the collector
answers, one is sent at a time, oldest first, each after a pause twice as long as the last
send took (at least ``_GAP``): a recovering collector gets a steady trickle, not the whole
backlog at once, and the worker stays mostly free for the app's new events.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._client import Outcome
    from ._delivery import Tally
    from ._spool import Claim, Spool

logger = logging.getLogger(__name__)

_GAP = 0.02  # seconds: at most 50 spooled batches a second per process
_PROBE_FIRST = 1.0
_PROBE_MAX = 15.0  # an outage's end is noticed within this many seconds
_IDLE = 60.0  # seconds between looks for files other processes left
_REPEAT = 600.0  # seconds before a change of state is said at INFO again (else DEBUG)


class Recovery:
    """The spool's side of delivery, for one transport."""

    def __init__(self, spool: Spool, tally: Tally) -> None:
        self.spool = spool
        self.tally = tally
        self._outage = False
        self.probes = 0  # failed probes in this outage
        self.next_at = 0.0  # monotonic: when the spool may next be looked at (0: at start)
        self.resent_run = 0  # items re-sent since the spool last emptied
        self._trim_logged = False
        self._said: dict[str, float] = {}

    @property
    def usable(self) -> bool:
        return not self.spool.disabled

    @property
    def outage(self) -> bool:
        return self._outage and not self.spool.disabled

    # Writing -----------------------------------------------------------------------------------

    def store(self, channel: str, body: bytes, count: int) -> bool:
        """Put a batch the worker holds in the spool. False if the spool cannot be written
        (the caller drops it); a batch larger than the whole spool is dropped here."""
        try:
            stored, removed = self.spool.write(channel, body, count)
        except Exception as exc:  # never the worker's end: the spool goes off, the caller drops
            logger.debug("moesif-agent: spool write failed", exc_info=True)
            self.spool.disable(f"{type(exc).__name__}: {exc}")
            return False
        if removed:
            self.tally.drop("spool_full", removed, in_flight=False)
            if not self._trim_logged:
                self._trim_logged = True
                logger.warning(
                    "moesif-agent: the spool is full (spool_max_bytes=%d): dropping the oldest "
                    "batches (counted as spool_full)",
                    self.spool.max_bytes,
                )
        if stored:
            self.tally.settle(count)
        elif not self.spool.disabled:
            # larger than the whole spool: not worth anything else it holds
            self.tally.drop("spool_full", count)
            return True
        return stored

    def failed(self, outcome: Outcome) -> None:
        """A live batch could not be delivered: the collector is down for now."""
        if not self._outage:
            self._outage = True
            self.probes = 0
            self._trim_logged = False
            self._say(
                "spooling",
                "moesif-agent: the collector cannot take batches now; keeping them in %s "
                "(up to %d MB) and sending them when it answers",
                self.spool.dir or self.spool.dirs[0],
                self.spool.max_bytes // 1_000_000,
            )
        self._schedule_probe(outcome)

    def _say(self, what: str, message: str, *args: Any) -> None:
        """A change of state: at INFO, unless the same was said lately (a flapping collector)."""
        now = time.monotonic()
        last = self._said.get(what)
        if last is None or now - last >= _REPEAT:
            self._said[what] = now
            logger.info(message, *args)
        else:
            logger.debug(message, *args)

    def _schedule_probe(self, outcome: Outcome) -> None:
        delay = min(_PROBE_MAX, _PROBE_FIRST * 2**self.probes) * random.uniform(0.8, 1.2)
        if outcome.retry_after is not None:
            delay = max(delay, outcome.retry_after)
        self.next_at = time.monotonic() + delay

    # Reading -----------------------------------------------------------------------------------

    def due(self) -> Claim | None:
        """The spooled batch to send now (locked), if it is time for one."""
        now = time.monotonic()
        if now < self.next_at or self.spool.disabled:
            return None
        claim = self.spool.claim()
        if claim is not None:
            return claim
        if self.spool.pending():  # all held by other processes: they probe, we wait
            self.next_at = now + (_PROBE_FIRST if self._outage else _GAP * 10)
            return None
        if self._outage:
            self._outage = False  # nothing left to probe with: the next live batch will
        if self.resent_run:
            self._say("resent", "moesif-agent: re-sent %d spooled items", self.resent_run)
            self.resent_run = 0
        self.next_at = now + _IDLE
        return None

    def sent(self, claim: Claim, elapsed: float) -> None:
        """The collector took the claimed batch (or its items were split and handled)."""
        self.spool.done(claim)
        self._outage = False
        self.probes = 0
        self.resent_run += claim.entry.count
        self.next_at = time.monotonic() + max(_GAP, 2 * elapsed)

    def release(self, claim: Claim, outcome: Outcome) -> None:
        """The claimed batch could not be sent: it stays, and the collector is down."""
        self.spool.release(claim)
        if self._outage:
            self.probes += 1
            self._schedule_probe(outcome)
        else:
            self.failed(outcome)

    def set_aside(self, claim: Claim) -> None:
        self.spool.release(claim)
        self.spool.set_aside(claim.entry, ValueError(f"unknown kind {claim.entry.channel!r}"))

    def wait(self) -> float:
        return max(0.0, self.next_at - time.monotonic())

    def stats(self) -> dict[str, Any]:
        return {**self.spool.stats(), "outage": self.outage}
