"""Ingest throughput of the local collector, and how fast its dashboard queries answer.

Ingest (the default): starts ``moesif-agent collector`` in a subprocess (the client runs in
this process, so the two use different cores; ``--pin`` confines the collector to one core and
the client to the other), posts ~1 KB events in gzip batches of 100 to ``/v1/events/batch``
from a few client threads, and prints events/s. The payloads are built and compressed before
the clock starts, so the figure is the collector's: HTTP, gunzip, JSON, validation and SQLite.
Every event has its own transaction_id, so none is deduplicated, and the stored count is
checked at the end.

Queries (``--queries``): stores 200,000 events (a day of traffic over 28 endpoints, 2,000
users) straight into a database, starts the collector on it and times the read API the viewer
uses: the endpoint summary and the time series must answer in under 300 ms.

    .venv/bin/python -m benchmarks.collector [--events 50000] [--batch 100] [--clients 4] [--pin]
    .venv/bin/python -m benchmarks.collector --queries [--stored 200000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()
EVENT_BYTES = 1024


def make_event(i: int, rng: random.Random) -> dict[str, Any]:
    now = time.time() - rng.random() * 3600
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    event: dict[str, Any] = {
        "request": {
            "time": stamp,
            "uri": f"https://api.example.com/items/{i}?page={rng.randint(1, 9)}",
            "verb": rng.choice(("GET", "POST", "PUT", "DELETE")),
            "api_version": "1.0.0",
            "ip_address": f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "headers": {
                "Host": "api.example.com",
                "Accept": "application/json",
                "User-Agent": "bench-client/1.0",
                "Content-Type": "application/json",
                "Content-Length": "64",
            },
            "body": {"id": i, "name": " ".join(rng.choices(_WORDS, k=4))},
            "transfer_encoding": "json",
        },
        "response": {
            "time": stamp,
            "status": rng.choice((200, 200, 200, 201, 404, 500)),
            "headers": {"Content-Type": "application/json", "Cache-Control": "no-cache"},
            "body": {"ok": True, "id": i, "tags": rng.choices(_WORDS, k=3)},
            "transfer_encoding": "json",
        },
        "transaction_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "user_id": f"user-{rng.randint(1, 500)}",
        "company_id": f"company-{rng.randint(1, 50)}",
        "direction": "Incoming",
        "metadata": {"note": ""},
    }
    missing = EVENT_BYTES - len(json.dumps(event, separators=(",", ":")))
    words: list[str] = []
    while missing > 0:
        word = rng.choice(_WORDS)
        words.append(word)
        missing -= len(word) + 1
    event["metadata"]["note"] = " ".join(words)[: max(0, len(" ".join(words)) + missing)]
    return event


def make_payloads(count: int, batch: int, seed: int) -> tuple[list[bytes], int]:
    rng = random.Random(seed)
    payloads = []
    raw_bytes = 0
    for start in range(0, count, batch):
        events = [make_event(i, rng) for i in range(start, min(count, start + batch))]
        body = json.dumps(events, separators=(",", ":")).encode()
        raw_bytes += len(body)
        payloads.append(gzip.compress(body, compresslevel=6))
    return payloads, raw_bytes


def start_collector(workdir: Path, pin: bool) -> tuple[subprocess.Popen[bytes], str]:
    ready = workdir / "ready"
    command = [sys.executable, "-m", "moesif_agent", "collector", "--port", "0"]
    command += ["--db", str(workdir / "bench.db"), "--ready-file", str(ready)]
    command += ["--log-level", "warning", "--max-events", "0"]
    # Its stderr (the progress line) goes to a file, shown only if it fails to start.
    with open(workdir / "collector.log", "wb") as log:
        proc = subprocess.Popen(command, stderr=log)
    if pin:
        os.sched_setaffinity(proc.pid, {1})
        os.sched_setaffinity(0, {0})
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            output = (workdir / "collector.log").read_text(errors="replace")
            raise SystemExit(f"the collector did not start (exit code {proc.poll()}):\n{output}")
        time.sleep(0.05)
    return proc, ready.read_text().strip()


def post_all(url: str, payloads: list[bytes], clients: int) -> float:
    work: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    for payload in payloads:
        work.put(payload)
    for _ in range(clients):
        work.put(None)
    errors: list[str] = []
    headers = {
        "X-Moesif-Application-Id": "bench",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }

    def client() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            while (payload := work.get()) is not None:
                response = http.post("/v1/events/batch", content=payload)
                if response.status_code != 201:
                    errors.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} batches failed, first: {errors[0]}")
    return elapsed


# The query benchmark's traffic: (verb, route template, path with {} for an id, weight).
ENDPOINTS = [
    (verb, f"/v1/{name}/{{id}}", f"/v1/{name}/{{}}", share)
    for name, share in (("items", 8), ("orders", 5), ("users", 4), ("invoices", 2))
    for verb in ("GET", "PUT", "DELETE")
] + [
    (verb, f"/v1/{name}", f"/v1/{name}", 3)
    for name in ("items", "orders", "users", "invoices", "search", "login", "reports", "tags")
    for verb in ("GET", "POST")
]


def stored_event(i: int, rng: random.Random, start: float) -> dict[str, Any]:
    """One event of a day of traffic: a random endpoint, a log-normal duration (median
    ~25 ms, a long tail), mostly 2xx, some sampled (weight 10)."""
    verb, route, path, _ = rng.choices(ENDPOINTS, weights=[e[3] for e in ENDPOINTS])[0]
    begin = start + rng.random() * 86400
    end = begin + min(rng.lognormvariate(3.2, 1.0), 30000) / 1000

    def iso(moment: float) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
        return f"{stamp}.{int(moment % 1 * 1000):03d}Z"

    status = rng.choices(
        (200, 201, 204, 301, 400, 404, 429, 500, 503), (60, 8, 4, 2, 5, 9, 3, 3, 1)
    )[0]
    event: dict[str, Any] = {
        "request": {
            "time": iso(begin),
            "uri": "https://api.example.com" + path.format(rng.randint(1, 10**6)),
            "verb": verb,
            "headers": {"Host": "api.example.com", "User-Agent": "bench-client/1.0"},
            "body": {"query": " ".join(rng.choices(_WORDS, k=3))},
        },
        "response": {
            "time": iso(end),
            "status": status,
            "headers": {"Content-Type": "application/json"},
            "body": {"ok": status < 400, "id": i},
        },
        "transaction_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "user_id": f"user-{rng.randint(1, 2000)}",
        "company_id": f"company-{rng.randint(1, 200)}",
        "metadata": {"route": route},
    }
    if rng.random() < 0.05:
        event["weight"] = 10
    return event


def fill(path: Path, count: int, seed: int) -> None:
    """``count`` events straight into the store (validated and derived as ingest would)."""
    from moesif_agent.collector._retention import Retention
    from moesif_agent.collector._store import Store
    from moesif_agent.collector._validate import events as validate_events

    rng = random.Random(seed)
    start = time.time() - 86400
    with Store(path, Retention(max_events=None, max_age=None)) as store:
        for first in range(0, count, 1000):
            batch = [stored_event(i, rng, start) for i in range(first, min(count, first + 1000))]
            texts = [(event, json.dumps(event, separators=(",", ":"))) for event in batch]
            store.add_events(validate_events(texts, int(time.time() * 1e6), True))


QUERIES = [
    ("endpoint summary", "/api/endpoints", {}, 0.3),
    ("time series", "/api/timeseries", {}, 0.3),
    ("endpoint summary, last hour", "/api/endpoints", {"since": 3600}, 0.3),
    ("time series, last hour", "/api/timeseries", {"since": 3600}, 0.3),
    ("people (users)", "/api/people/users", {}, None),
    ("search", "/api/events", {"q": "alpha bravo"}, None),
    ("events, first page", "/api/events", {}, None),
    ("stats", "/api/stats", {}, None),
]


def time_queries(url: str, rounds: int) -> bool:
    """Times each of QUERIES ``rounds`` times; True when all kept their budget."""
    ok = True
    with httpx.Client(base_url=url, timeout=60) as http:
        for label, path, spec, budget in QUERIES:
            params: dict[str, str] = {}
            if "since" in spec:
                since = time.time() - float(spec["since"])
                params["time__gt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
            params.update({k: str(v) for k, v in spec.items() if k != "since"})
            timings = []
            for _ in range(rounds):
                started = time.perf_counter()
                response = http.get(path, params=params)
                timings.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise SystemExit(f"GET {path}: {response.status_code} {response.text[:200]}")
            median = statistics.median(timings)
            verdict = ""
            if budget is not None:
                verdict = "  ok" if median < budget else f"  OVER the {budget * 1000:.0f} ms budget"
                ok = ok and median < budget
            print(
                f"{label:<30} median {median * 1000:6.1f} ms, max {max(timings) * 1000:6.1f} ms"
                f" ({len(response.content):,} B){verdict}"
            )
    return ok


def queries(stored: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="moesif-bench-") as tmp:
        started = time.perf_counter()
        fill(Path(tmp, "bench.db"), stored, seed=7)
        print(f"stored {stored:,} events in {time.perf_counter() - started:.1f} s")
        proc, url = start_collector(Path(tmp), pin=False)
        try:
            ok = time_queries(url, rounds)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    if not ok:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events per run (50000)")
    parser.add_argument("--batch", type=int, default=100, help="events per batch (100)")
    parser.add_argument("--clients", type=int, default=4, help="client threads (4)")
    parser.add_argument("--runs", type=int, default=3, help="runs, each on a fresh database (3)")
    parser.add_argument(
        "--pin", action="store_true", help="pin the collector to core 1 and the client to core 0"
    )
    parser.add_argument(
        "--queries", action="store_true", help="time the dashboard's read API instead"
    )
    parser.add_argument(
        "--stored", type=int, default=200_000, help="events stored for --queries (200000)"
    )
    parser.add_argument("--rounds", type=int, default=7, help="calls per query (7)")
    args = parser.parse_args()
    if args.queries:
        queries(args.stored, args.rounds)
        return
    pin = args.pin and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2

    rates = []
    for run in range(args.runs):
        payloads, raw_bytes = make_payloads(args.events, args.batch, seed=run)
        warmup, _ = make_payloads(10 * args.batch, args.batch, seed=1000 + run)
        with tempfile.TemporaryDirectory(prefix="moesif-bench-") as tmp:
            proc, url = start_collector(Path(tmp), pin)
            try:
                post_all(url, warmup, args.clients)
                elapsed = post_all(url, payloads, args.clients)
                stored = httpx.get(url + "/api/stats").json()["events"]
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        expected = args.events + 10 * args.batch
        if stored != expected:
            raise SystemExit(f"stored {stored} events, expected {expected}")
        rate = args.events / elapsed
        rates.append(rate)
        gz_bytes = sum(len(p) for p in payloads)
        print(
            f"run {run + 1}: {args.events} events in {elapsed:.2f} s = {rate:,.0f} events/s "
            f"({raw_bytes / elapsed / 1e6:.1f} MB/s JSON, {gz_bytes / elapsed / 1e6:.1f} MB/s "
            f"gzip, {raw_bytes // args.events} B/event)"
        )
    print(
        f"collector ingest: median {statistics.median(rates):,.0f} events/s over {len(rates)} "
        f"runs (batches of {args.batch}, {args.clients} clients, pinned: {pin})"
    )


if __name__ == "__main__":
    main()
