"""In-process request benchmarks shared by the framework benchmarks.

Bare and instrumented apps are driven alternately in the same run; each round times N
requests and the table reports medians over rounds. The agent under test queues events
during a timed round (its worker is parked) and delivers them between rounds, so the figures
are the request path's own cost; rounds are short so that the backlog a parked worker leaves
(and the garbage collector's scans of it) stays small. The worker's cost per event is
measured separately by ``benchmarks.transport``.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from ._util import median

PARKED_WORKER = {
    "batch_size": 1_000_000,
    "event_queue_size": 1_000_000,
    "batch_max_time": 3600.0,
}

Driver = Callable[[], Any]


def park(agent: Any) -> Any:
    """Keep the worker from waking during a round: it encodes a slice of events as soon as a
    few are queued, which would time its work into the request path's figures."""
    agent._transport.slice = agent._transport.batch_size
    return agent


def time_round(drive: Driver, count: int) -> float:
    """µs per request, wall clock. A driver may offer ``run(count)`` to serve ``count``
    requests itself (an ASGI driver runs them all inside one event-loop turn)."""
    gc.collect()
    run = getattr(drive, "run", None)
    started = time.perf_counter()
    if run is not None:
        run(count)
    else:
        for _ in range(count):
            drive()
    return (time.perf_counter() - started) / count * 1e6


def allocated(drive: Driver, count: int = 200) -> float:
    """Median peak of traced memory allocated while serving one request, in bytes."""
    samples = []
    tracemalloc.start()
    try:
        for _ in range(count):
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            drive()
            samples.append(tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()
    return median(samples)


def compare(
    bare: Driver,
    wrapped: Driver,
    between_rounds: Callable[[], None],
    *,
    rounds: int = 11,
    count: int = 500,
) -> dict[str, float]:
    """Alternate bare and wrapped rounds; medians of µs per request, and bytes per request."""
    for _ in range(200):  # warm-up
        bare()
        wrapped()
    between_rounds()
    bare_times, wrapped_times = [], []
    for n in range(rounds):
        order = [(bare, bare_times), (wrapped, wrapped_times)]
        if n % 2:
            order.reverse()
        for drive, sink in order:
            sink.append(time_round(drive, count))
        between_rounds()
    bare_bytes = allocated(bare)
    wrapped_bytes = allocated(wrapped)
    between_rounds()
    b, w = median(bare_times), median(wrapped_times)
    return {
        "bare_us": b,
        "wrapped_us": w,
        "added_us": w - b,
        "ratio": w / b,
        "bare_bytes": bare_bytes,
        "added_bytes": wrapped_bytes - bare_bytes,
    }


def row(name: str, result: dict[str, float]) -> list[object]:
    return [
        name,
        f"{result['bare_us']:.1f}",
        f"{result['wrapped_us']:.1f}",
        f"**{result['added_us']:+.1f}**",
        f"x{result['ratio']:.2f}",
        f"{result['added_bytes'] / 1024:+.1f} KiB",
    ]


HEADERS = ["case", "bare µs", "agent µs", "added µs", "ratio", "added alloc/request"]
