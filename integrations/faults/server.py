"""A programmable fault collector, run in its own process by ``control.FaultCollector``.

    python -m integrations.faults.server --port P --admin-port A --journal PATH [--bind-timeout S]

It speaks the three Collector API calls the agent makes (``POST /v1/events/batch``,
``GET /v1/config``, ``GET /v1/rules``) on ``--port`` and takes orders on ``--admin-port``:

    POST /mode/<mode>   healthy | down | slow | error500 | throttle429 | malformed
    GET  /state         {"mode", "instance", "inflight", "served": {"<what>:<mode>": n}}

Every accepted batch is appended to the journal as one JSON line ``{"instance", "mode",
"ids"}`` *before* the 201 is written, as a real collector commits before it acknowledges; so
a batch whose answer never reached the agent (a timeout, a kill) can be journaled twice, and
the test can tell which copies those were. The journal is a file so that it survives a
restart (SIGKILL) of this process.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("healthy", "down", "slow", "error500", "throttle429", "malformed")
SLOW_SECONDS = 5.0

HEALTHY_CONFIG = json.dumps(
    {
        "org_id": "faults",
        "app_id": "faults",
        "sample_rate": 100,
        "user_sample_rate": {},
        "company_sample_rate": {},
        "regex_config": [],
        "user_rules": {},
        "company_rules": {},
    }
).encode()
HEALTHY_RULES = b"[]"

# Served in turn, one per fetch, in malformed mode: invalid JSON, the wrong top-level type,
# and the right top-level type with every field wrong (the hardest: it reaches the compiler).
MALFORMED_CONFIG = (
    b'{"sample_rate": 100, "regex_config": [',
    b'["sample_rate", 0]',
    json.dumps(
        {
            "sample_rate": "0",
            "user_sample_rate": [0],
            "company_sample_rate": "none",
            "regex_config": {"conditions": 1},
            "user_rules": 7,
            "company_rules": [None],
        }
    ).encode(),
)
MALFORMED_RULES = (
    b'[{"_id": "r1", "type": "regex"',
    b'{"rules": []}',
    json.dumps(
        [
            1,
            "block",
            None,
            {"_id": 5, "type": [], "regex_config": "x", "response": 3},
            {"_id": "r2", "type": "regex", "block": True, "regex_config": [{"conditions": 0}]},
        ]
    ).encode(),
)


class State:
    """What every handler thread reads: the mode, counters, the journal."""

    def __init__(self, journal: str) -> None:
        self.lock = threading.Lock()
        self.mode = "healthy"
        self.inflight = 0
        self.served: Counter[str] = Counter()
        self.journal = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def count(self, key: str) -> int:
        with self.lock:
            self.served[key] += 1
            return self.served[key]

    def record(self, mode: str, ids: list[str]) -> None:
        line = json.dumps({"instance": os.getpid(), "mode": mode, "ids": ids}) + "\n"
        with self.lock:
            # One write per batch on an O_APPEND file: whole lines, even if we are killed.
            os.write(self.journal, line.encode())


class CollectorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the agent's client expects
    disable_nagle_algorithm = True
    server: DataServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._serve(body)

    def do_GET(self) -> None:
        self._serve(None)

    def _serve(self, body: bytes | None) -> None:
        state = self.server.state
        with state.lock:
            mode = state.mode  # the mode when the request arrived decides its fate
            state.inflight += 1
        try:
            self._answer(state, mode, body)
        except OSError:
            pass  # the agent gave up on this request (its timeout); nothing to answer
        finally:
            with state.lock:
                state.inflight -= 1

    def _answer(self, state: State, mode: str, body: bytes | None) -> None:
        what = "events" if self.path == "/v1/events/batch" else self.path.rsplit("/", 1)[-1]
        served = state.count(f"{what}:{mode}")
        if mode == "slow":
            time.sleep(SLOW_SECONDS)
        if mode == "error500":
            self._send(500, b'{"error": "injected 500"}')
            return
        if mode == "throttle429":
            self._send(429, b'{"error": "injected 429"}', [("Retry-After", "1")])
            return
        # The config version: only the malformed documents are a different one.
        version = "faults-malformed" if mode == "malformed" else "faults-v1"
        etag = [("X-Moesif-Config-ETag", version)]
        if self.command == "POST" and self.path == "/v1/events/batch":
            assert body is not None
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            ids = [event["transaction_id"] for event in json.loads(body)]
            state.record(mode, ids)
            self._send(201, b"", etag)
        elif self.command == "GET" and what in ("config", "rules"):
            if mode == "malformed":
                variants = MALFORMED_CONFIG if what == "config" else MALFORMED_RULES
                self._send(200, variants[(served - 1) % len(variants)], etag)
                return
            # The healthy documents never change: an HTTP ETag lets the agent skip them.
            document = HEALTHY_CONFIG if what == "config" else HEALTHY_RULES
            http_etag = f'"healthy-{what}"'
            if self.headers.get("If-None-Match") == http_etag:
                self._send(304, b"", [*etag, ("ETag", http_etag)])
            else:
                self._send(200, document, [*etag, ("ETag", http_etag)])
        else:
            self._send(404, b'{"error": "not a route of the fault collector"}')

    def _send(self, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response_only(status)
        for name, value in [("Content-Type", "application/json"), *headers]:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one stderr line per request would slow everything down


class DataServer(ThreadingHTTPServer):
    """The Collector API listener; remembers its connections so that ``down`` can cut the
    agent's keep-alive ones too (closing only the listener would leave them working)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, state: State) -> None:
        self.state = state
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), CollectorHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # connections we cut on purpose end in errors; the journal is the record

    def close_everything(self) -> None:
        self.shutdown()
        self.server_close()
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Collector:
    """Owns the data listener, so that ``down`` can close it and ``healthy`` re-bind it."""

    def __init__(self, port: int, state: State, bind_timeout: float = 5) -> None:
        self.port = port
        self.state = state
        self.server: DataServer | None = None
        self.lock = threading.Lock()
        self.listen(bind_timeout)

    def listen(self, bind_timeout: float = 5) -> None:
        deadline = time.monotonic() + bind_timeout
        while True:
            try:
                self.server = DataServer(self.port, self.state)
                break
            except OSError:  # the port is not free yet (a standby waits for its predecessor)
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def set_mode(self, mode: str) -> None:
        with self.lock:
            if mode == "down" and self.server is not None:
                with self.state.lock:
                    self.state.mode = mode
                self.server.close_everything()
                self.server = None
                return
            if self.server is None:
                self.listen()
            with self.state.lock:
                self.state.mode = mode


class AdminHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    collector: Collector  # set on the subclass main() builds

    def do_POST(self) -> None:
        mode = self.path.removeprefix("/mode/")
        if not self.path.startswith("/mode/") or mode not in MODES:
            self._json(404, {"error": f"POST /mode/<one of {', '.join(MODES)}>"})
            return
        self.collector.set_mode(mode)
        self._json(200, {"mode": mode})

    def do_GET(self) -> None:
        state = self.collector.state
        with state.lock:
            snapshot = {
                "mode": state.mode,
                "instance": os.getpid(),
                "inflight": state.inflight,
                "served": dict(state.served),
            }
        self._json(200, snapshot)

    def _json(self, status: int, document: Any) -> None:
        body = json.dumps(document).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--bind-timeout", type=float, default=5)
    args = parser.parse_args()
    # Imports are done: a standby (see FaultCollector.prepare_restart) waits for the port here.
    sys.stdout.write("binding\n")
    sys.stdout.flush()
    collector = Collector(args.port, State(args.journal), args.bind_timeout)
    handler = type("Admin", (AdminHandler,), {"collector": collector})
    admin = ThreadingHTTPServer(("127.0.0.1", args.admin_port), handler)
    admin.daemon_threads = True
    admin.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
