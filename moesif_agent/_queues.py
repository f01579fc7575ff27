"""The bounded queues request threads put into and the worker drains.

A put is one length check and one ``deque.append`` (atomic under the GIL); counters increment
with one C call. Nothing here blocks a request thread.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Any


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


class Channel:
    """One kind of item (events, users, companies...), its bounded queue and its endpoint."""

    def __init__(
        self,
        name: str,
        path: str,
        maxsize: int,
        encode: Callable[[Any], bytes],
    ) -> None:
        self.name = name
        self.path = path
        self.maxsize = maxsize
        self.encode = encode
        self.queue: deque[Any] = deque()
        self.dropped_full = Counter()
        # Items the worker took so far, and what popped + queued was when it last looked: the
        # difference says whether request threads queued anything meanwhile (the app is busy).
        self.popped = 0
        self.activity_seen = 0

    def app_active(self) -> bool:
        """Whether request threads queued items since the last call (worker thread only)."""
        total = self.popped + len(self.queue)
        if total == self.activity_seen:
            return False
        self.activity_seen = total
        return True
