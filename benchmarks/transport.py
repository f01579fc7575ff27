"""Transport benchmark: cost of ``record()`` on the calling thread, and sustained delivery.

Events are ~1 KB captured exchanges (headers and small JSON bodies, as an adapter records
them); the worker encodes, gzips and POSTs them to a loopback sink in another process.

    python -m benchmarks.transport
"""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

from moesif_agent import Agent
from moesif_agent._capture import new_transaction_id
from moesif_agent._client import GZIP_LEVEL
from moesif_agent._exchange import HEADERS_WSGI, Body, Exchange

from ._util import median, sink, table

REQUEST_BODY = json.dumps({"name": "widget", "tags": ["a", "b", "c"], "note": "n" * 300}).encode()
RESPONSE_BODY = json.dumps({"id": 12345, "name": "widget", "owner": {"id": 7}, "x": "y" * 250})


def exchange() -> Exchange:
    ex = Exchange()
    ex.transaction_id = new_transaction_id()
    ex.request_time = time.time()
    ex.response_time = ex.request_time + 0.001
    ex.method = "POST"
    ex.host = "127.0.0.1:8000"
    ex.path = "/items"
    ex.remote_addr = "127.0.0.1"
    ex.request_header_style = HEADERS_WSGI
    ex.request_headers = [
        ("HTTP_HOST", "127.0.0.1:8000"),
        ("HTTP_USER_AGENT", "bench/1.0"),
        ("HTTP_ACCEPT", "*/*"),
        ("CONTENT_TYPE", "application/json"),
        ("CONTENT_LENGTH", str(len(REQUEST_BODY))),
    ]
    body = Body(100_000)
    body.add(REQUEST_BODY)
    ex.request_body = body
    ex.status = 201
    ex.response_headers = [("Content-Type", "application/json"), ("Content-Length", "400")]
    response = Body(100_000)
    response.add(RESPONSE_BODY.encode())
    ex.response_body = response
    return ex


def record_cost(url: str, calls: int = 50_000) -> tuple[float, float]:
    """(wall µs, calling-thread CPU µs) per record() while the worker delivers."""
    agent = Agent(application_id="bench", base_uri=url, event_queue_size=calls + 1)
    agent.flush(timeout=10)  # started, config fetched: the steady state is measured
    items = [exchange() for _ in range(calls)]
    wall = time.perf_counter()
    cpu = time.thread_time()
    record = agent.record
    for item in items:
        record(item)
    cpu = time.thread_time() - cpu
    wall = time.perf_counter() - wall
    agent.flush(timeout=60)
    agent.shutdown()
    return wall / calls * 1e6, cpu / calls * 1e6


def delivery_rate(url: str, count: int = 100_000, **options: Any) -> tuple[float, int]:
    """Events/s from the first record() until flush() confirms delivery of all of them.

    The producer cycles through a pool of captured exchanges (so that what is measured is the
    agent's delivery, not the cost of building test data), as fast as the queue takes them:
    it waits when the queue is nearly full, so nothing is dropped.
    """
    agent = Agent(application_id="bench", base_uri=url, **options)
    agent.flush(timeout=10)
    limit = agent.options.event_queue_size - 2 * agent.options.batch_size
    pool = [exchange() for _ in range(1000)]
    pending = agent._transport.pending
    record = agent.record
    started = time.perf_counter()
    for n in range(count):
        if n % 100 == 0:
            while pending() >= limit:
                time.sleep(0.0005)
        record(pool[n % 1000])
    assert agent.flush(timeout=120)
    elapsed = time.perf_counter() - started
    stats = agent.stats()
    agent.shutdown()
    assert stats["sent"] == count and not stats["dropped"], stats
    size = len(agent._encoder.encode(pool[0]))
    return count / elapsed, size


def drain_rate(url: str, count: int = 50_000) -> float:
    """Events/s of the worker alone: the queue is filled first (worker idle), then drained."""
    agent = Agent(application_id="bench", base_uri=url, event_queue_size=count, batch_max_time=3600)
    agent.flush(timeout=10)
    pool = [exchange() for _ in range(1000)]
    queue = agent._events.queue
    queue.extend(pool[n % 1000] for n in range(count - 1))  # as request threads would have
    started = time.perf_counter()
    agent.record(pool[0])  # a full batch wakes the worker
    assert agent.flush(timeout=120)
    elapsed = time.perf_counter() - started
    stats = agent.stats()
    agent.shutdown()
    assert stats["sent"] == count and not stats["dropped"], stats
    return count / elapsed


def stages(url: str, batches: int = 100, batch: int = 100) -> list[list[object]]:
    """Where the worker's time per event goes: building and masking the event and encoding
    it (one call), gzip of its batch, and the POST (CPU of this thread, and wall clock)."""
    agent = Agent(application_id="bench", base_uri=url)
    agent.flush(timeout=10)
    encode = agent._encoder.encode
    pool = [exchange() for _ in range(batch)]
    encode_s = gzip_s = post_cpu = post_wall = 0.0
    for _ in range(batches):
        started = time.perf_counter()
        payload = b"[" + b",".join(encode(item) for item in pool) + b"]"
        encode_s += time.perf_counter() - started
        started = time.perf_counter()
        compressed = gzip.compress(payload, compresslevel=GZIP_LEVEL)
        gzip_s += time.perf_counter() - started
        started, cpu = time.perf_counter(), time.thread_time()
        outcome = agent._transport.sender.post_json("/v1/events/batch", payload)
        post_cpu += time.thread_time() - cpu
        post_wall += time.perf_counter() - started
        assert outcome.ok, outcome
    agent.shutdown()
    events = batches * batch
    per = 1e6 / events
    return [
        ["worker: build, mask and encode one event", f"{encode_s * per:.2f} µs"],
        [f"worker: gzip (level {GZIP_LEVEL}), per event", f"{gzip_s * per:.2f} µs"],
        [
            f"worker: POST of a {batch}-event batch (gzip included), CPU per event",
            f"{post_cpu * per:.2f} µs",
        ],
        [
            f"worker: POST, wall clock per event ({len(compressed)} B compressed)",
            f"{post_wall * per:.2f} µs",
        ],
    ]


def main() -> list[list[object]]:
    with sink() as url:
        print(table(["worker stage", "per event"], stages(url)))
        record_cost(url, 5_000)  # warm-up
        walls, cpus, rates, drains = [], [], [], []
        size = 0
        for _ in range(3):
            wall, cpu = record_cost(url)
            walls.append(wall)
            cpus.append(cpu)
            rate, size = delivery_rate(url)
            rates.append(rate)
            drains.append(drain_rate(url))
    rows: list[list[object]] = [
        ["record() on the calling thread, wall (worker running)", f"{median(walls):.2f} µs"],
        ["record() on the calling thread, thread CPU", f"{median(cpus):.2f} µs"],
        [
            f"sustained delivery, {size} B events, gzip, loopback, producer thread recording",
            f"{median(rates):,.0f} events/s",
        ],
        ["the worker alone, draining a full queue", f"{median(drains):,.0f} events/s"],
    ]
    print(table(["transport", "median of 3"], rows))
    return rows


if __name__ == "__main__":
    main()
