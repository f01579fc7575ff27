"""The command line's progress line: while events arrive, once a second at most,

    collector: 1,204 events stored since start (312/s); last: POST /items 201

so whoever started the collector sees that their agent reaches it without opening the viewer.
Nothing is printed while nothing arrives.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

from ._store import Activity


class Progress:
    """Writes ``activity``'s progress line to ``stream`` from a daemon thread."""

    def __init__(self, activity: Activity, stream: TextIO, interval: float = 1.0) -> None:
        self.activity = activity
        self.stream = stream
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="moesif-collector-progress")
        self._thread.daemon = True
        self._count = activity.stored
        self._since = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            line = self.line(time.monotonic())
            if line is not None:
                self.stream.write(line + "\n")
                self.stream.flush()

    def line(self, now: float) -> str | None:
        """The line for what arrived since the last one, or None when nothing did."""
        stored, last = self.activity.stored, self.activity.last
        if stored == self._count or last is None:
            return None
        rate = (stored - self._count) / max(now - self._since, 1e-3)
        self._count, self._since = stored, now
        status, verb, route = last
        shown = "no response" if status is None else str(status)
        return (
            f"collector: {stored:,} events stored since start ({rate:,.0f}/s); "
            f"last: {verb} {route} {shown}"
        )
