"""A small real HTTP collector for tests: records what it receives, answers what it is told.

It runs on 127.0.0.1 on an ephemeral port in a background thread. By default every POST gets
201; ``script`` queues special answers (a status, headers, a delay, or closing the connection)
that are used in order before falling back to the default.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    status: int = 201
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    close: bool = False  # drop the connection without answering
    hang: bool = False  # wait until the recorder is released (or stopped)
    body: bytes = b"{}"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    at: float

    @property
    def json(self) -> Any:
        data = self.raw
        if self.headers.get("content-encoding") == "gzip":
            data = gzip.decompress(data)
        return json.loads(data) if data else None


class Recorder:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[Answer] = []
        self.default = Answer()
        self.get_answers: dict[str, Answer] = {}
        self.config_etag: str | None = None
        self.etag_cycle: list[str] = []  # when set, batch responses rotate through these
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.arrived = threading.Condition(self._lock)
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                item = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    raw,
                    time.monotonic(),
                )
                with recorder._lock:
                    if self.command == "GET" and self.path.split("?")[0] in recorder.get_answers:
                        answer = recorder.get_answers[self.path.split("?")[0]]
                    else:
                        answer = recorder.script.pop(0) if recorder.script else recorder.default
                    recorder.received.append(item)
                    recorder.arrived.notify_all()
                if answer.hang:
                    recorder._release.wait()
                    self.close_connection = True
                    return
                if answer.delay:
                    time.sleep(answer.delay)
                if answer.close:
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.body)))
                etag = recorder.config_etag
                if recorder.etag_cycle and self.command == "POST":
                    with recorder._lock:
                        etag = recorder.etag_cycle.pop(0)
                        recorder.etag_cycle.append(etag)
                if etag and "X-Moesif-Config-ETag" not in answer.headers:
                    self.send_header("X-Moesif-Config-ETag", etag)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)

            do_POST = _handle
            do_GET = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def release(self) -> None:
        self._release.set()

    def serve_config(self, config: Any, rules: Any = (), etag: str = "etag-1") -> None:
        """Answer GET /v1/config and /v1/rules with these documents under this ETag."""
        self.config_etag = etag  # sent on every response, these included
        self.get_answers["/v1/config"] = Answer(200, body=json.dumps(config).encode())
        self.get_answers["/v1/rules"] = Answer(200, body=json.dumps(list(rules)).encode())

    def fetches(self, path: str = "/v1/config") -> int:
        with self._lock:
            return sum(1 for r in self.received if r.method == "GET" and r.path == path)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Reading what arrived

    def batches(self, path: str = "/v1/events/batch") -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.method == "POST" and r.path == path]

    def events(self, path: str = "/v1/events/batch") -> list[dict[str, Any]]:
        return [event for batch in self.batches(path) for event in batch.json]

    def iter_requests(self) -> Iterator[Received]:
        with self._lock:
            yield from list(self.received)

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` requests (of any kind) have arrived."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.arrived.wait(remaining)
        return True
