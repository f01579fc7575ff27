"""The traffic: mixed GET / 2 KB JSON POST requests from a few client threads, each with its
own X-Moesif-Transaction-Id, each timed on the client and checked against the example
contract. ``http.client`` rather than httpx: it costs the client far less CPU, which on two
cores is CPU the app under test keeps, and it keeps latency noise down."""

from __future__ import annotations

import http.client
import itertools
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

NOTE = "x" * 2000


@dataclass
class LoadResult:
    ids: list[str] = field(default_factory=list)  # in the order the requests were sent
    latencies: list[float] = field(default_factory=list)  # seconds, one per request
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] * 1000

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)


class Load:
    """``count`` requests from ``concurrency`` threads, one connection each (kept alive where
    the server allows: uvicorn does, gunicorn's sync worker closes it after each response)."""

    def __init__(self, url: str, count: int, *, concurrency: int = 3) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.count = count
        self.concurrency = concurrency
        self._done: list[tuple[int, str, float, str | None]] = []
        self._next = itertools.count()  # next() is atomic under the GIL: hands out request numbers
        self._completed = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(concurrency)]
        self._started = 0.0

    def start(self) -> Load:
        self._started = time.perf_counter()
        for thread in self._threads:
            thread.start()
        return self

    @property
    def completed(self) -> int:
        return self._completed

    def wait_completed(self, count: int, timeout: float = 60) -> None:
        """Poll until ``count`` requests have completed (to inject a fault mid-run)."""
        deadline = time.monotonic() + timeout
        while self._completed < count:
            if time.monotonic() > deadline or not any(t.is_alive() for t in self._threads):
                raise TimeoutError(f"{self._completed} of {count} requests completed")
            time.sleep(0.005)

    def join(self) -> LoadResult:
        for thread in self._threads:
            thread.join()
        result = LoadResult(seconds=time.perf_counter() - self._started)
        for n, txid, latency, problem in sorted(self._done):
            result.ids.append(txid)
            result.latencies.append(latency)
            if problem:
                result.failures.append(f"request {n}: {problem}")
        return result

    def _run(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        done: list[tuple[int, str, float, str | None]] = []
        try:
            for n in self._next:
                if n >= self.count:
                    break
                txid = str(uuid.uuid4())  # a canonical UUID: the agent takes no other
                started = time.perf_counter()
                try:
                    problem = self._one(connection, n, txid)
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                    connection.close()  # reconnects on the next request
                done.append((n, txid, time.perf_counter() - started, problem))
                with self._lock:
                    self._completed += 1
        finally:
            connection.close()
            with self._lock:
                self._done.extend(done)

    @staticmethod
    def _one(connection: http.client.HTTPConnection, n: int, txid: str) -> str | None:
        """One request; what is wrong with its response, or None."""
        headers = {"X-Moesif-Transaction-Id": txid}
        if n % 2:
            body = json.dumps({"name": "widget", "note": NOTE, "n": n}).encode()
            headers["Content-Type"] = "application/json"
            connection.request("POST", "/items", body=body, headers=headers)
            expected_status = 201
        else:
            connection.request("GET", f"/items/{n}", headers=headers)
            expected_status = 200
        response = connection.getresponse()
        content = response.read()
        if response.status != expected_status:
            return f"status {response.status}: {content[:200]!r}"
        document = json.loads(content)
        key, value = ("n", n) if n % 2 else ("id", str(n))
        if not isinstance(document, dict) or document.get(key) != value:
            return f"unexpected body {content[:200]!r}"
        if response.getheader("X-Moesif-Transaction-Id") != txid:
            return "the transaction id was not echoed"
        return None


def drive(url: str, count: int, *, concurrency: int = 3) -> LoadResult:
    return Load(url, count, concurrency=concurrency).start().join()
