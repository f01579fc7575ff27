"""``moesif-agent demo``: the local collector, the example apps under real servers, a short
mixed traffic, and a summary of what was captured, sampled, masked and blocked.

It serves the example Flask app under gunicorn and the FastAPI app under uvicorn: the copies
shipped in the wheel (``moesif_agent._examples``) when installed, else ``examples/`` of a
source checkout. It needs the ``[demo]`` extra, and stops everything it started before it
exits; ``--serve`` keeps it all running for browsing the viewer until Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

BLOCKED_USER = "demo-free-user"
DEMO_CONFIG = {
    "sample_rate": 100,
    # One sampled route: health checks are kept at 0% (they still answer, they are not sent).
    "regex_config": [
        {"conditions": [{"path": "request.route", "value": "^/health"}], "sample_rate": 0}
    ],
    "user_rules": {BLOCKED_USER: [{"rules": "demo-quota", "values": {"0": "Free", "1": "1000"}}]},
}
DEMO_RULES = [
    {
        "_id": "demo-quota",
        "name": "Block Free users over their monthly quota",
        "type": "user",
        "block": True,
        "response": {
            "status": 429,
            "headers": {"X-Rate-Limit-Month": "{{1}}"},
            "body": {
                "error_code": "too_many_requests",
                "message": "You exceeded your monthly quota of {{1}} for the {{0}} plan.",
            },
        },
    }
]


def _token(user: str) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"sub": user}).encode()).decode().rstrip("=")
    return f"Bearer eyJhbGciOiJub25lIn0.{payload}.demo"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# What the demo runs, by import name: the [demo] extra installs them all.
DEMO_MODULES = ("flask", "fastapi", "starlette", "uvicorn", "gunicorn")


def missing_modules() -> list[str]:
    return [name for name in DEMO_MODULES if importlib.util.find_spec(name) is None]


def _examples() -> tuple[str, Path | None]:
    """The example apps' package, and the directory to put on PYTHONPATH for it (None: it is
    installed). An editable install has no ``_examples``: the checkout's ``examples/``."""
    if importlib.util.find_spec("moesif_agent._examples") is not None:
        return "moesif_agent._examples", None
    for candidate in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (candidate / "examples" / "flask_app.py").exists():
            return "examples", candidate
    raise SystemExit(
        "moesif-agent demo: the example apps are missing from this installation; "
        "reinstall it with: pip install --force-reinstall 'moesif-agent[demo]'"
    )


class _App:
    def __init__(self, name: str, argv: list[str], root: Path | None, env: dict[str, str]) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [part.replace("{port}", str(self.port)) for part in argv]
        self.proc = subprocess.Popen(
            argv, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"demo: {self.name} exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/items/0", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise SystemExit(f"demo: {self.name} did not start within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _traffic(app: _App, tally: Counter[str]) -> None:
    """A short mixed traffic: GET/POST, streaming, an error, health checks, a blocked user."""
    with httpx.Client(base_url=app.url, timeout=30) as client:

        def send(method: str, path: str, **kwargs: Any) -> httpx.Response:
            response = client.request(method, path, **kwargs)
            tally["sent"] += 1
            if response.status_code == 429:
                tally["blocked"] += 1
            return response

        for n in range(1, 6):
            send("GET", f"/items/{n}", headers={"Authorization": _token(f"user-{n}")})
        for n in range(3):
            payload = {"name": f"widget {n}", "password": "hunter2", "card": {"cvv": "123"}}
            send("POST", "/items", json=payload, headers={"Authorization": _token("user-1")})
        send("GET", "/stream?chunks=3&delay=0.05")
        # uvicorn drops the connection after an app exception: use a connection of its own
        send("GET", "/error", headers={"Connection": "close"})
        for _ in range(5):
            send("GET", "/health")
            tally["sampled_out"] += 1
        for n in range(3):
            response = send("GET", f"/items/{n}", headers={"Authorization": _token(BLOCKED_USER)})
            if response.status_code != 429:
                tally["unexpected"] += 1


def _wait_for_rules(app: _App, tally: Counter[str], timeout: float = 20) -> None:
    """The agent fetches the collector's rules after its first event: wait until the blocked
    user is blocked (each probe is an API call too, and is counted)."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": _token(BLOCKED_USER)}
    while time.monotonic() < deadline:
        status = httpx.get(f"{app.url}/items/probe", headers=headers, timeout=10).status_code
        tally["sent"] += 1
        if status == 429:
            tally["blocked"] += 1
            return
        time.sleep(0.2)
    raise SystemExit(f"demo: {app.name} did not apply the demo rules within {timeout} s")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="moesif-agent demo", description=__doc__)
    parser.add_argument("--serve", action="store_true", help="keep running for the viewer")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(list(argv))
    missing = missing_modules()
    if missing:
        sys.stderr.write(
            f"moesif-agent demo needs the [demo] extra (missing: {', '.join(missing)}); "
            "install it with: pip install 'moesif-agent[demo]'\n"
        )
        return 2
    from .collector._server import LocalCollector

    package, root = _examples()
    workdir = Path(tempfile.mkdtemp(prefix="moesif-demo-"))
    (workdir / "config.json").write_text(json.dumps(DEMO_CONFIG, indent=2))
    (workdir / "rules.json").write_text(json.dumps(DEMO_RULES, indent=2))

    def start_collector(port: int) -> LocalCollector:
        return LocalCollector(
            workdir / "collector.db",
            config_path=workdir / "config.json",
            rules_path=workdir / "rules.json",
            port=port,
        ).start()

    try:  # --serve: the viewer at the usual address when it is free
        collector = start_collector(8787 if args.serve else 0)
    except OSError:
        collector = start_collector(0)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "MOESIF_APPLICATION_ID": collector.application_id,
        "MOESIF_BASE_URI": collector.url,
        "MOESIF_BATCH_MAX_TIME": "0.2",
    }
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    apps = [
        _App(
            "Flask under gunicorn",
            [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:{port}",
             f"{package}.flask_app:app"],
            root,
            env,
        ),
        _App(
            "FastAPI under uvicorn",
            [sys.executable, "-m", "uvicorn", "--port", "{port}", "--no-access-log",
             f"{package}.fastapi_app:app"],
            root,
            env,
        ),
    ]  # fmt: skip
    tally: Counter[str] = Counter()
    try:
        for app in apps:
            app.wait_ready()
            tally["sent"] += 1  # the readiness probe
        for app in apps:
            _wait_for_rules(app, tally)
            _traffic(app, tally)
        expected = tally["sent"] - tally["sampled_out"]
        deadline = time.monotonic() + 30
        while collector.stats()["events"] < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        summary = _summary(tally, collector.stats(), collector.events(), collector.url)
        summary["database"] = str(workdir / "collector.db")
        summary["serving"] = args.serve
        summary["command"] = _command_name(bin_dir / "moesif-agent")
        sys.stdout.write(json.dumps(summary, indent=2) + "\n" if args.json else _table(summary))
        if args.serve:
            sys.stdout.write(f"\nServing; open {collector.url}/ (Ctrl-C to stop)\n")
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
        return 0 if summary["consistent"] else 1
    finally:
        for app in apps:
            app.stop()
        collector.stop()


def _command_name(path: Path) -> str:
    """The CLI's path as the user would type it: relative to the working directory when inside."""
    if not path.exists():
        return "moesif-agent"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _summary(
    tally: Counter[str], stats: dict[str, Any], events: list[dict[str, Any]], url: str
) -> dict[str, Any]:
    expected = tally["sent"] - tally["sampled_out"]
    per_route: Counter[str] = Counter()
    for event in events:
        route = (event.get("metadata") or {}).get("route")
        if route is None:  # blocked before the app routed it
            route = "(blocked) " + httpx.URL(event["request"]["uri"]).path
        per_route[f"{event['request']['verb']} {route}"] += 1
    return {
        "requests_sent": tally["sent"],
        "events_expected": expected,
        "events_stored": stats["events"],
        "blocked": tally["blocked"],
        "blocked_stored": stats.get("blocked"),
        "sampled_out": tally["sampled_out"],
        "events_per_route": dict(sorted(per_route.items())),
        "viewer": f"{url}/",
        "consistent": stats["events"] == expected
        and stats.get("blocked") == tally["blocked"]
        and not tally["unexpected"],
    }


def _table(summary: dict[str, Any]) -> str:
    lines = [
        "",
        "moesif-agent demo: Flask (gunicorn) and FastAPI (uvicorn) -> local collector",
        "",
        f"  requests sent         {summary['requests_sent']:>6}",
        f"  events stored         {summary['events_stored']:>6}"
        f"  (expected {summary['events_expected']})",
        f"  blocked by governance {summary['blocked']:>6}  (stored {summary['blocked_stored']})",
        f"  sampled out (/health) {summary['sampled_out']:>6}",
        "",
        "  events stored per route (both apps)",
    ]
    lines += [f"    {route:<28} {n:>4}" for route, n in summary["events_per_route"].items()]
    if summary.get("serving"):
        lines += ["", f"  events viewer: {summary['viewer']}", ""]
    else:  # the demo's servers are gone: say how to browse what it stored
        lines += [
            "",
            f"  events saved in {summary['database']}",
            f"  browse them:  {summary['command']} collector --db {summary['database']}",
            "                then open http://127.0.0.1:8787/",
            f"  or run        {summary['command']} demo --serve",
            "",
        ]
    if not summary["consistent"]:
        lines.append("  WARNING: the collector's counts do not match the traffic sent")
    return "\n".join(lines) + "\n"
