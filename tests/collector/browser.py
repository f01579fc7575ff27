"""What the viewer's browser tests share: headless Chromium (Debian's ``chromium`` package,
installed when missing: see ``chromium.py``) driven by Playwright, and a collector holding
what a real agent recorded of a real app served over HTTP on loopback.

The test modules import the fixtures from here."""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("werkzeug")
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="needs Playwright: pip install -e '.[dev]' (or pip install playwright)",
)

from werkzeug.middleware.lint import LintMiddleware
from werkzeug.serving import make_server

from moesif_agent.collector import LocalCollector
from moesif_agent.collector._derive import normalise_path
from moesif_agent.integrations.wsgi import MoesifWSGIMiddleware
from tests.collector.chromium import ARGS, CHROMIUM, INSTALL_HINT, install_chromium
from tests.collector.helpers import APP_ID

SCRIPT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned = 2">'
ORDER = {"item": "book", "note": SCRIPT, "gift_message": IMG, "quantity": 2}
NEEDLE = "flux-capacitor-88"  # in one request body only
NOTE = "Plain text, not JSON: <b>bold?</b> naïve café ✓"
BINARY = bytes(range(256))
# Screenshots go outside the repository; LOOK at them after a change to the page.
SHOTS = Path(os.environ.get("VIEWER_SHOTS", "/tmp/viewer-shots"))
WIDTHS = (1400, 800)


@pytest.fixture(scope="session")
def chromium() -> str:
    problem = install_chromium(CHROMIUM)
    if problem is not None:
        pytest.skip(
            f"Chromium is not at {CHROMIUM} and could not be installed ({problem}); {INSTALL_HINT}"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    # launch() gives the browser a fresh temporary profile (user data dir) of its own and
    # deletes it on close.
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
        yield browser
        browser.close()


# The monitored app --------------------------------------------------------------------------


def _app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Echoes the request body back with its content type; 404 under /missing; /boom raises."""
    if environ["PATH_INFO"] == "/boom":
        1 / 0  # noqa: B018 (a failed call, recorded with its exception)
    length = int(environ.get("CONTENT_LENGTH") or 0)
    data = environ["wsgi.input"].read(length) if length else b'{"ok": true}'
    content_type = environ.get("CONTENT_TYPE") or "application/json"
    status = "404 Not Found" if environ["PATH_INFO"].startswith("/missing") else "200 OK"
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def _identify_user(app: Any, environ: dict[str, Any], headers: Any = None) -> str | None:
    user: str | None = environ.get("HTTP_X_USER")
    return user


def _metadata(app: Any, environ: dict[str, Any]) -> dict[str, Any] | None:
    """The route template, as a framework adapter would report it (X-Route, for the test)."""
    route = environ.get("HTTP_X_ROUTE")
    return {"route": route} if route else None


@dataclass
class Traffic:
    collector: LocalCollector
    app_url: str = ""
    middleware: Any = None

    def instrument(self) -> Any:
        """A new middleware (and agent) for the app: the suite's autouse fixture shuts the
        middleware's shared agents down after each test, and this fixture outlives tests."""
        self.middleware = MoesifWSGIMiddleware(
            LintMiddleware(_app),
            application_id=self.collector.application_id,
            base_uri=self.collector.url,
            batch_max_time=0.05,
            identify_user=_identify_user,
            get_metadata=_metadata,
        )
        return self.middleware.agent

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.middleware(environ, start_response)

    def events(self, **filters: Any) -> list[dict[str, Any]]:
        return self.collector.events(**filters)

    def event(self, path: str) -> dict[str, Any]:
        (found,) = [e for e in self.events() if httpx.URL(e["request"]["uri"]).path == path]
        return found


def _send(app_url: str) -> None:
    alice = {"X-User": "alice"}
    with httpx.Client(base_url=app_url, timeout=30) as http:
        http.get("/items/1", headers=alice)
        http.get("/items/2", headers={**alice, "X-Route": "/items/{item_id}"})
        http.get("/items/3", headers={"X-Route": "/items/{item_id}"})
        http.post("/orders", json=ORDER, headers={**alice, "X-Note": SCRIPT + IMG})
        http.post("/orders", json={"item": NEEDLE, "quantity": 1}, headers={"X-User": "bob"})
        http.post("/notes", content=NOTE.encode(), headers={"Content-Type": "text/plain"})
        http.put("/upload", content=BINARY, headers={"Content-Type": "application/octet-stream"})
        http.get("/missing/page", headers={"X-User": IMG})
        http.get("/boom", headers={"X-User": "bob"})
        http.get("/reports/7", headers={"X-Route": "/reports/" + SCRIPT})


def _hostile_uri_event() -> dict[str, Any]:
    """One event whose URI is markup (an agent sends what the client asked for)."""
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "request": {
            "time": now,
            "uri": f"http://api.test/search/{SCRIPT}?q={IMG}",
            "verb": "GET",
            "headers": {"Host": "api.test"},
        },
        "response": {"time": now, "status": 200, "headers": {}},
        "transaction_id": str(uuid.uuid4()),
    }


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    """A collector holding what an instrumented WSGI app, served on loopback, saw of eleven
    calls (one failed with an exception), plus one user profile and one event with markup in
    its URI."""
    with LocalCollector(tmp_path_factory.mktemp("viewer") / "collector.db") as collector:
        traffic = Traffic(collector)
        agent = traffic.instrument()
        server = make_server("127.0.0.1", 0, traffic, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        traffic.app_url = f"http://127.0.0.1:{server.server_port}"
        try:
            _send(traffic.app_url)
            agent.update_user({"user_id": "alice", "company_id": "acme", "metadata": {"name": IMG}})
            assert agent.flush(timeout=10)
            with httpx.Client(headers={"X-Moesif-Application-Id": APP_ID}) as http:
                response = http.post(collector.url + "/v1/events", json=_hostile_uri_event())
                assert response.status_code == 201
            assert len(collector.events()) == 11
            yield traffic
        finally:
            server.shutdown()
            thread.join(10)
            agent.shutdown(timeout=5)


# The page -------------------------------------------------------------------------------------


@dataclass
class Viewer:
    """A browser page on the viewer, with what the page did that it never should."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    accept_dialogs: bool = False

    def rows(self, view: str = "events") -> Any:
        return self.page.locator(f"#view-{view} table.list > tbody > tr")

    def row(self, text: str, view: str = "events") -> Any:
        return self.rows(view).filter(has_text=text)

    def detail(self, view: str = "events") -> Any:
        return self.page.locator(f"#view-{view} .detail")

    def section(self, title: str) -> Any:
        return (
            self.detail()
            .locator("section.detail-section")
            .filter(has=self.page.locator("h3", has_text=title))
        )

    def tab(self, name: str) -> None:
        self.page.click(f"#tab-{name}")
        sync_api.expect(self.page.locator(f"#view-{name}")).to_be_visible()

    def filter(self, name: str, value: str) -> None:
        """Types into the shared filter bar and applies at once."""
        self.page.fill(f".shared-filters [name={name}]", value)
        self.page.press(f".shared-filters [name={name}]", "Enter")

    def status(self, view: str) -> Any:
        return self.page.locator(f"#view-{view} .list-status")

    def assert_nothing_ran(self, *, bad_requests: int = 0) -> None:
        """Nothing from the data ran, and the page logged no error (but the ``bad_requests``
        400 answers to filters the test got wrong on purpose)."""
        checks = self.page.evaluate(
            """() => ({
                pwned: typeof window.__pwned,
                images: document.querySelectorAll("img").length,
                handlers: document.querySelectorAll("[onerror], [onload], [onclick]").length,
                scripts: Array.from(document.scripts, (s) => s.getAttribute("src")),
            })"""
        )
        assert checks == {
            "pwned": "undefined",
            "images": 0,
            "handlers": 0,
            "scripts": ["static/viewer.js"],
        }
        if not self.accept_dialogs:
            assert self.dialogs == []
        rejected = [e for e in self.errors if "status of 400 (Bad Request)" in e]
        assert len(rejected) == bad_requests
        assert [e for e in self.errors if e not in rejected] == []


def open_viewer(browser: Any, url: str, width: int = 1400, **options: Any) -> Viewer:
    context = browser.new_context(viewport={"width": width, "height": 900}, **options)
    context.set_default_timeout(10_000)
    viewer = Viewer(context.new_page())

    def on_dialog(dialog: Any) -> None:
        viewer.dialogs.append(dialog.message)
        if viewer.accept_dialogs:
            dialog.accept()
        else:
            dialog.dismiss()

    viewer.page.on("dialog", on_dialog)
    viewer.page.on("pageerror", lambda error: viewer.errors.append(f"page error: {error}"))
    # A CSP violation or a failed load shows up as a console error.
    viewer.page.on(
        "console", lambda m: m.type == "error" and viewer.errors.append(f"console: {m.text}")
    )
    viewer.page.goto(url)
    return viewer


@pytest.fixture
def viewer(browser: Any, traffic: Traffic) -> Iterator[Viewer]:
    viewer = open_viewer(browser, traffic.collector.url + "/")
    yield viewer
    viewer.page.context.close()


# What the page should show, computed from the stored events -----------------------------------


def route_of(event: dict[str, Any]) -> str:
    route = (event.get("metadata") or {}).get("route")
    return route or normalise_path(httpx.URL(event["request"]["uri"]).path)


def duration_ms(event: dict[str, Any]) -> int | None:
    if "response" not in event:
        return None
    start, end = (
        datetime.fromisoformat(event[part]["time"].replace("Z", "+00:00"))
        for part in ("request", "response")
    )
    return round((end - start).total_seconds() * 1000)


def ms_text(value: float | None) -> str:
    """As the page writes a duration of millisecond times."""
    if value is None:
        return "—"
    return "<1 ms" if value < 1 else f"{value:,.0f} ms"


def rate_text(part: int, whole: int) -> str:
    if not part:
        return "0%"
    percent = part / whole * 100
    return "<0.1%" if percent < 0.1 else f"{percent:.1f}%"


def nearest_rank(values: list[int], p: int) -> int | None:
    ordered = sorted(values)
    return ordered[math.ceil(p / 100 * len(ordered)) - 1] if ordered else None


def endpoint_rows(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The endpoint table's cells (calls to p99) by its "METHOD route" text, from the events."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        groups[f"{event['request']['verb']} {route_of(event)}"].append(event)
    rows = {}
    for name, members in groups.items():
        statuses = [e.get("response", {}).get("status") or 0 for e in members]
        durations = [d for e in members if (d := duration_ms(e)) is not None]
        calls = len(members)  # the agent sampled nothing out: every weight is 1
        rows[name] = [
            f"{calls:,}",
            rate_text(sum(400 <= s < 500 for s in statuses), calls),
            rate_text(sum(s >= 500 for s in statuses), calls),
            *(ms_text(nearest_rank(durations, p)) for p in (50, 95, 99)),
        ]
    return rows


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
