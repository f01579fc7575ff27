"""Real servers for the integration suites: the local collector and the example apps, each in
its own process on a loopback port, with readiness probes instead of sleeps."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: Any, timeout: float, what: str, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not ready after {timeout} s")


class CollectorProcess:
    """``moesif-agent collector`` in a subprocess, on an ephemeral port."""

    def __init__(self, config: Any = None, rules: Any = None, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="moesif-it-"))
        self.config_path = self.workdir / "config.json"
        self.rules_path = self.workdir / "rules.json"
        self.write_config(config if config is not None else {"sample_rate": 100})
        self.write_rules(rules if rules is not None else [])
        ready = self.workdir / "ready"
        command = [
            sys.executable, "-m", "moesif_agent", "collector", "--port", "0",
            "--db", str(self.workdir / "collector.db"), "--ready-file", str(ready),
            "--config", str(self.config_path), "--rules", str(self.rules_path),
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, cwd=ROOT)
        wait_until(ready.exists, 20, "collector", self.proc)
        self.url = ready.read_text().strip()
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def write_config(self, config: Any) -> None:
        self.config_path.write_text(json.dumps(config))

    def write_rules(self, rules: Any) -> None:
        self.rules_path.write_text(json.dumps(rules))

    def events(self, **filters: Any) -> list[dict[str, Any]]:
        params = {key: str(value) for key, value in filters.items()}
        params.setdefault("limit", "1000")
        items: list[dict[str, Any]] = []
        while True:
            page = self.client.get("/api/events", params=params).raise_for_status().json()
            items.extend(page["items"])
            if not page["next_cursor"]:
                return items
            params["cursor"] = page["next_cursor"]

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get("/api/stats").raise_for_status().json()
        return result

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class AppServer:
    """An example app under a real server (gunicorn or uvicorn), instrumented by the agent."""

    def __init__(
        self,
        command: Sequence[str],
        collector_url: str,
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        probe: str = "/health",
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "MOESIF_APPLICATION_ID": "integration-tests",
            "MOESIF_BASE_URI": collector_url,
            "MOESIF_BATCH_MAX_TIME": "0.2",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        argv = [part.replace("{port}", str(self.port)) for part in command]
        argv[0] = str(BIN / argv[0]) if (BIN / argv[0]).exists() else argv[0]
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL)
        self.client = httpx.Client(base_url=self.url, timeout=30)
        wait_until(self._probe_ok(probe), 30, " ".join(command), self.proc)

    def _probe_ok(self, probe: str) -> Any:
        def ok() -> bool:
            try:
                headers = {"X-Moesif-Transaction-Id": f"probe-{uuid.uuid4()}"}
                return self.client.get(probe, headers=headers).status_code == 200
            except httpx.TransportError:
                return False

        return ok

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (a graceful stop, as in production); returns the exit code."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode


def drive(url: str, count: int, *, concurrency: int = 8) -> list[str]:
    """``count`` mixed requests (GET and 2 KB JSON POST), each with its own transaction id;
    returns the ids. Every response must be what the example contract says."""
    body = {"name": "widget", "note": "x" * 2000}

    limits = httpx.Limits(max_connections=concurrency)
    with httpx.Client(base_url=url, timeout=30, limits=limits) as client:

        def one(n: int) -> str:
            txid = str(uuid.uuid4())
            headers = {"X-Moesif-Transaction-Id": txid}
            if n % 2:
                response = client.post("/items", json={**body, "n": n}, headers=headers)
                assert response.status_code == 201, response.text
                assert response.json()["n"] == n
            else:
                response = client.get(f"/items/{n}", headers=headers)
                assert response.status_code == 200, response.text
                assert response.json()["id"] == str(n)
            assert response.headers["x-moesif-transaction-id"] == txid
            return txid

        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(one, range(count)))


def first_chunk_streams(url: str) -> tuple[float, float]:
    """(seconds to the first chunk, seconds to the end) of /stream with 1 s between chunks."""
    started = time.monotonic()
    with (
        httpx.Client(timeout=30) as client,
        client.stream("GET", f"{url}/stream", params={"chunks": 3, "delay": 1.0}) as response,
    ):
        chunks = response.iter_raw()
        next(chunks)
        first = time.monotonic() - started
        for _ in chunks:
            pass
    return first, time.monotonic() - started


def by_transaction_id(events: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {event["transaction_id"]: event for event in events}
