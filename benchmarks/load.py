"""Under real servers: requests/s and latency of the bare example apps vs the instrumented
ones, driven by wrk over loopback, alternating bare and agent runs.

One worker each (gunicorn sync for Flask and Django, uvicorn for FastAPI), pinned to CPU 0;
wrk and the collector sink are pinned to CPU 1. Needs wrk (`apt-get install wrk`).

    python -m benchmarks.load [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from ._util import median, sink, table
from .wsgi import POST_BODY

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
APPS = {
    "Flask (gunicorn sync)": [str(BIN / "gunicorn"), "--bind", "127.0.0.1:{port}",
                              "--workers", "1", "examples.flask_app:app"],
    "FastAPI (uvicorn)": [str(BIN / "uvicorn"), "--port", "{port}", "--no-access-log",
                          "examples.fastapi_app:app"],
    "Django (gunicorn sync)": [str(BIN / "gunicorn"), "--bind", "127.0.0.1:{port}",
                               "--workers", "1", "examples.django_project.wsgi:application"],
}  # fmt: skip
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _pinned(cpu: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if shutil.which("taskset") else argv


def _rss_mb(pid: int) -> float:
    """RSS of the process serving requests (the gunicorn worker: the master's child)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists() and children.read_text().split():
        pid = int(children.read_text().split()[0])
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Server:
    def __init__(self, argv: list[str], instrument: bool, collector: str, port: int) -> None:
        env = {
            **os.environ,
            "EXAMPLE_INSTRUMENT": "1" if instrument else "0",
            "MOESIF_APPLICATION_ID": "bench",
            "MOESIF_BASE_URI": collector,
            "PYTHONPATH": str(ROOT),
        }
        command = _pinned(0, [part.replace("{port}", str(port)) for part in argv])
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/items/1", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"server did not start: {command}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(url: str, seconds: float, script: Path | None) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms)."""
    command = ["wrk", "-t1", "-c8", f"-d{max(1, round(seconds))}s", "--latency", url]
    if script is not None:
        command[1:1] = ["-s", str(script)]
    out = subprocess.run(_pinned(1, command), capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    percentiles = {
        int(p): float(v) * UNITS[u]
        for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed responses from {url}")
    return rate, percentiles[50], percentiles[99]


def main(argv: list[str] | None = None) -> list[list[object]]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--app", default="", help="only the apps whose name contains this")
    parser.add_argument("--case", default="", help="only the cases containing this (GET, POST)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("benchmarks.load skipped: wrk is not installed (apt-get install wrk)")
        return []
    workdir = Path(tempfile.mkdtemp(prefix="moesif-load-"))
    post = workdir / "post.lua"
    body = POST_BODY.decode().replace("\\", "\\\\").replace("'", "\\'")
    post.write_text(
        f"wrk.method = 'POST'\nwrk.body = '{body}'\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
    )
    rows: list[list[object]] = []
    with sink() as collector:
        for app, command in APPS.items():
            for case, path, script in (("GET", "/items/42", None), ("POST 2 KB", "/items", post)):
                if args.app not in app or args.case not in case:
                    continue
                results: dict[bool, list[tuple[float, float, float, float]]] = {False: [], True: []}
                for n in range(args.rounds):
                    for instrument in (False, True) if n % 2 == 0 else (True, False):
                        port = 18000 + n * 2 + instrument
                        server = Server(command, instrument, collector, port)
                        try:
                            wrk(server.url + path, 1, script)  # warm-up
                            rate, p50, p99 = wrk(server.url + path, args.seconds, script)
                            results[instrument].append((rate, p50, p99, _rss_mb(server.proc.pid)))
                        finally:
                            server.stop()
                bare = [median([r[i] for r in results[False]]) for i in range(4)]
                agent = [median([r[i] for r in results[True]]) for i in range(4)]
                rows.append(
                    [
                        app,
                        case,
                        f"{bare[0]:,.0f} / {agent[0]:,.0f}",
                        f"x{agent[0] / bare[0]:.2f}",
                        f"{bare[1]:.2f} / {agent[1]:.2f}",
                        f"{bare[2]:.2f} / {agent[2]:.2f}",
                        f"{bare[3]:.0f} / {agent[3]:.0f}",
                    ]
                )
                print(rows[-1], flush=True)
    headers = ["app", "case", "req/s bare / agent", "ratio", "p50 ms", "p99 ms", "worker RSS MB"]
    print(table(headers, rows))
    return rows


if __name__ == "__main__":
    main()
