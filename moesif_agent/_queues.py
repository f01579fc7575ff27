"""The bounded queues request threads put into and the worker drains.

A put is two bound checks (count, bytes) and one ``deque.append`` (atomic under the GIL);
counters increment with one C call. Nothing here blocks a request thread.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from ._exchange import Exchange

# An item's size for the byte bound is estimated, never measured: what its bodies keep plus a
# fixed part for the rest. Measured here with tracemalloc: a GET exchange with a dozen headers
# and no body holds ~1.5 KB (the slots object, header tuples and strings, ids, times).
_EXCHANGE_BASE = 512
_PER_HEADER = 96
_OTHER_ITEM = 1024  # a wire-format event dict or a user/company/action: small JSON objects


class Counter:
    """A thread-safe counter whose increment is one C call (``next`` on itertools.count)."""

    __slots__ = ("_count",)

    def __init__(self) -> None:
        self._count = itertools.count()

    def increment(self) -> None:
        next(self._count)

    @property
    def value(self) -> int:
        # repr is "count(N)": the one way to read the counter without consuming it
        return int(repr(self._count)[6:-1])


class Held:
    """An exchange recorded before the collector's config was known: the worker samples it
    with the config that answer brings (or the default one, if it fails)."""

    __slots__ = ("ex",)

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex


class Skip(Exception):
    """Raised by a channel's ``encode`` for an item that is not sent and not lost (sampled
    out on the worker): counted by whoever raised it, not as a drop."""


def item_size(item: Any) -> int:
    """The estimated bytes an item holds while queued (request thread and worker alike)."""
    if type(item) is Held:
        item = item.ex
    if type(item) is not Exchange:
        return _OTHER_ITEM
    size = _EXCHANGE_BASE + _PER_HEADER * (len(item.request_headers) + len(item.response_headers))
    body = item.request_body
    if body is not None:
        size += body.kept
    body = item.response_body
    if body is not None:
        size += body.kept
    return size


class Channel:
    """One kind of item (events, users, companies...), its bounded queue and its endpoint."""

    def __init__(
        self,
        name: str,
        path: str,
        maxsize: int,
        encode: Callable[[Any], bytes],
        max_bytes: int = 32_000_000,
    ) -> None:
        self.name = name
        self.path = path
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.encode = encode
        self.queue: deque[Any] = deque()
        # Estimated bytes queued: request threads add, the worker subtracts what it takes.
        # ``+=`` on an int attribute is not split by a GIL switch in CPython, and the worker
        # resets it whenever it empties the queue, so an error cannot accumulate.
        self.queued_bytes = 0
        self.dropped_full = Counter()
        self.dropped_bytes = Counter()
        # Items the worker took so far, and what popped + queued was when it last looked: the
        # difference says whether request threads queued anything meanwhile (the app is busy).
        self.popped = 0
        self.activity_seen = 0
        # Encoded items waiting for their batch to fill (worker only), and since when (the
        # monotonic time of the oldest one's capture).
        self.ready: list[bytes] = []
        self.ready_bytes = 0
        self.ready_since = 0.0

    def app_active(self) -> bool:
        """Whether request threads queued items since the last call (worker thread only)."""
        total = self.popped + len(self.queue)
        if total == self.activity_seen:
            return False
        self.activity_seen = total
        return True

    def pressed(self) -> bool:
        """Half full, by count or by bytes: time to move what is queued out of memory."""
        return len(self.queue) * 2 >= self.maxsize or self.queued_bytes * 2 >= self.max_bytes

    def take(self, count: int, max_bytes: int) -> list[Any]:
        """Up to ``count`` items and about ``max_bytes``, oldest first, their bytes no longer
        counted (worker). What the worker holds is bounded too, not only what is queued."""
        queue = self.queue
        items: list[Any] = []
        size = 0
        while len(items) < count and size < max_bytes:
            try:
                item = queue.popleft()
            except IndexError:  # empty, or a forked child cleared it
                break
            items.append(item)
            size += item_size(item)
        self.popped += len(items)
        if queue:
            self.queued_bytes -= size
        else:
            self.queued_bytes = 0
        return items

    def clear(self) -> int:
        """Empty the queue; how many items it held."""
        left = len(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        return left
