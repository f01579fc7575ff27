"""The viewer in a real browser: headless Chromium (Debian's ``chromium`` package, installed
when missing: see ``chromium.py``) driven by Playwright, over events an instrumented WSGI app
sent to a ``LocalCollector``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

pytest.importorskip("werkzeug")
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="needs Playwright: pip install -e '.[dev]' (or pip install playwright)",
)

from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client

from moesif_agent.collector import LocalCollector
from moesif_agent.integrations.wsgi import MoesifWSGIMiddleware
from tests.collector.chromium import ARGS, CHROMIUM, INSTALL_HINT, install_chromium
from tests.collector.helpers import APP_ID, make_event, post

# Installing Chromium (first run on a fresh machine) can take minutes; each test is quick.
pytestmark = pytest.mark.timeout(900)

SCRIPT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned = 2">'
ORDER = {"item": "book", "note": SCRIPT, "gift_message": IMG, "quantity": 2}
NOTE = "Plain text, not JSON: <b>bold?</b> naïve café ✓"
BINARY = bytes(range(256))


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
    """Echoes the request body back with its content type; 404 under /missing."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    data = environ["wsgi.input"].read(length) if length else b'{"ok": true}'
    content_type = environ.get("CONTENT_TYPE") or "application/json"
    status = "404 Not Found" if environ["PATH_INFO"].startswith("/missing") else "200 OK"
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def _identify_user(app: Any, environ: dict[str, Any], headers: Any) -> str | None:
    user: str | None = environ.get("HTTP_X_USER")
    return user


@dataclass
class Traffic:
    collector: LocalCollector
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> stored event


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    """A collector holding what a monitored WSGI app saw: five calls and one user profile."""
    with LocalCollector(tmp_path_factory.mktemp("viewer") / "collector.db") as collector:
        middleware = MoesifWSGIMiddleware(
            LintMiddleware(_app),
            application_id=collector.application_id,
            base_uri=collector.url,
            batch_max_time=0.05,
            identify_user=_identify_user,
        )
        client = Client(LintMiddleware(middleware))
        alice = {"X-User": "alice"}
        # buffered: the client closes each response, which is when the middleware records it.
        client.get("/items/1", headers=alice, buffered=True)
        client.post(
            "/orders",
            data=json.dumps(ORDER),
            content_type="application/json",
            headers={**alice, "X-Note": SCRIPT + IMG},
            buffered=True,
        )
        client.post(
            "/notes", data=NOTE.encode(), content_type="text/plain; charset=utf-8", buffered=True
        )
        client.put("/upload", data=BINARY, content_type="application/octet-stream", buffered=True)
        client.get("/missing/page", buffered=True)
        middleware.agent.update_user(
            {"user_id": "alice", "company_id": "acme", "metadata": {"name": IMG, "email": "a@x.io"}}
        )
        assert middleware.agent.flush(timeout=10)
        middleware.agent.shutdown(timeout=5)
        events = collector.events()
        assert len(events) == 5, events
        sent = {httpx.URL(e["request"]["uri"]).path: e for e in events}
        assert sent["/notes"]["request"]["transfer_encoding"] == "base64"
        yield Traffic(collector, sent)


@dataclass
class Viewer:
    """A browser page on the viewer, with what the page did that it never should."""

    page: Any
    dialogs: list[str]
    errors: list[str]

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
        assert self.dialogs == []
        rejected = [e for e in self.errors if "status of 400 (Bad Request)" in e]
        assert len(rejected) == bad_requests
        assert [e for e in self.errors if e not in rejected] == []


@pytest.fixture
def viewer(browser: Any, traffic: Traffic) -> Iterator[Viewer]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    # A CSP violation or a failed load shows up as a console error.
    page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
    page.goto(traffic.collector.url + "/")
    yield Viewer(page, dialogs, errors)
    context.close()


# The tests ----------------------------------------------------------------------------------


def test_the_events_are_listed_and_filtered(viewer: Viewer) -> None:
    expect = sync_api.expect
    expect(viewer.rows()).to_have_count(5)
    orders = viewer.row("/orders")
    expect(orders.locator("td").nth(1)).to_have_text("POST")
    expect(orders.locator("td").nth(3)).to_have_text("200")
    expect(orders.locator("td").nth(5)).to_have_text("alice")
    expect(orders.locator("td").nth(4)).to_have_text(re.compile(r"^\d+(\.\d)? ms$"))
    expect(viewer.row("/missing/page").locator("td").nth(3)).to_have_text("404")

    viewer.page.fill("#view-events input[name=verb]", "POST")
    viewer.page.press("#view-events input[name=verb]", "Enter")
    expect(viewer.rows()).to_have_count(2)
    expect(viewer.rows()).to_contain_text(["/notes", "/orders"])

    viewer.page.fill("#view-events input[name=route]", "^/ord")
    expect(viewer.rows()).to_have_count(1)
    assert viewer.page.evaluate("location.hash") == "#events?verb=POST&route=%5E%2Ford"

    viewer.page.select_option("#view-events select[name=blocked]", "true")
    expect(viewer.rows()).to_have_count(0)
    expect(viewer.page.locator("#view-events .list-status")).to_have_text(
        "No events match these filters."
    )
    viewer.page.click("#view-events button:text('Clear')")
    expect(viewer.rows()).to_have_count(5)

    viewer.page.fill("#view-events input[name=status]", "4xx")
    expect(viewer.rows()).to_have_count(1)
    viewer.page.fill("#view-events input[name=status]", "4yy")
    expect(viewer.page.locator("#view-events .list-status")).to_contain_text(
        "bad filter status: '4yy' is neither a status code"
    )
    viewer.assert_nothing_ran(bad_requests=1)


def test_hostile_content_is_shown_as_text(viewer: Viewer, traffic: Traffic) -> None:
    expect = sync_api.expect
    viewer.row("/orders").click()
    expect(viewer.detail()).to_be_visible()
    expect(viewer.detail().locator(".detail-title")).to_contain_text("POST")
    request_body = viewer.section("Request body").locator("pre")
    # Pretty-printed as JSON.stringify(body, null, 2) does: what json.dumps(indent=2) gives.
    assert request_body.text_content() == json.dumps(ORDER, indent=2, ensure_ascii=False)
    headers = viewer.section("Request headers")
    expect(headers.locator("tr", has_text="X-Note").locator("td")).to_have_text(SCRIPT + IMG)
    expect(viewer.section("Response body").locator("pre")).to_contain_text(SCRIPT)
    expect(viewer.section("Overview")).to_contain_text(traffic.sent["/orders"]["transaction_id"])
    assert "window.__pwned = 1" in (viewer.detail().text_content() or "")
    viewer.assert_nothing_ran()


def test_base64_bodies_are_decoded_when_text(viewer: Viewer) -> None:
    expect = sync_api.expect
    viewer.row("/notes").click()
    body = viewer.section("Request body")
    expect(body.locator(".body-label")).to_have_text(
        f"text (decoded from base64, {len(NOTE.encode())} bytes)"
    )
    assert body.locator("pre").text_content() == NOTE
    expect(viewer.section("Response body").locator("pre")).to_have_text(NOTE)

    viewer.row("/upload").click()  # the open detail follows the clicked row
    body = viewer.section("Request body")
    expect(body.locator(".body-label")).to_have_text(f"binary, {len(BINARY)} bytes")
    expect(body.locator("details pre")).to_be_hidden()  # the hex dump stays folded
    viewer.page.keyboard.press("Escape")
    expect(viewer.detail()).to_be_hidden()
    viewer.assert_nothing_ran()


def test_the_users_tab_lists_profiles(viewer: Viewer) -> None:
    expect = sync_api.expect
    expect(viewer.page.locator("#tab-users .count")).to_have_text("1")
    viewer.page.click("#tab-users")
    expect(viewer.page.locator("#view-events")).to_be_hidden()
    alice = viewer.row("alice", view="users")
    expect(alice.locator("td")).to_have_text(
        ["alice", "acme", IMG, "a@x.io", re.compile("."), re.compile(".")]
    )
    alice.click()
    expect(viewer.detail("users")).to_contain_text(f'"name": {json.dumps(IMG)}')
    for tab in ("companies", "subscriptions", "actions"):
        viewer.page.click(f"#tab-{tab}")
        expect(viewer.page.locator(f"#view-{tab} .list-status")).to_contain_text(f"No {tab} yet")
    assert viewer.page.evaluate("location.hash") == "#actions"
    viewer.assert_nothing_ran()


def test_load_more_follows_the_cursor(browser: Any, collector: LocalCollector) -> None:
    expect = sync_api.expect
    with httpx.Client(base_url=collector.url, headers={"X-Moesif-Application-Id": APP_ID}) as http:
        batch = [make_event() for _ in range(130)]
        for n, event in enumerate(batch):
            event["request"]["time"] = f"2024-02-06T10:{n // 60:02d}:{n % 60:02d}.000Z"
        assert post(http, "/v1/events/batch", batch).status_code == 201
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(collector.url + "/#events")
        rows = page.locator("#view-events table.list > tbody > tr")
        expect(rows).to_have_count(100)
        expect(rows.first).to_contain_text("10:02:09")  # newest first: event 129
        page.click("#view-events button.more")
        expect(rows).to_have_count(130)
        expect(rows.last).to_contain_text("10:00:00")
        expect(page.locator("#view-events button.more")).to_be_hidden()
    finally:
        context.close()


def test_live_refresh_keeps_the_filters_and_the_open_detail(
    viewer: Viewer, traffic: Traffic
) -> None:
    """Runs last in this module: it adds an event to the shared collector."""
    expect = sync_api.expect
    viewer.page.fill("#view-events input[name=verb]", "POST")
    viewer.page.press("#view-events input[name=verb]", "Enter")
    expect(viewer.rows()).to_have_count(2)
    viewer.row("/orders").click()
    detail_before = viewer.detail().text_content()

    with httpx.Client(
        base_url=traffic.collector.url, headers={"X-Moesif-Application-Id": APP_ID}
    ) as http:
        event = make_event()
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        event["request"].update(verb="POST", uri="https://api.example.com/late/arrival", time=now)
        event["response"]["time"] = now
        assert post(http, "/v1/events", event).status_code == 201

    expect(viewer.rows()).to_have_count(3, timeout=10_000)  # polled every 3 s
    expect(viewer.rows().first).to_contain_text("/late/arrival")
    expect(viewer.page.locator("#view-events input[name=verb]")).to_have_value("POST")
    expect(viewer.row("/orders")).to_have_class("selected")
    assert viewer.detail().is_visible()
    assert viewer.detail().text_content() == detail_before
    expect(viewer.page.locator("#tab-events .count")).to_have_text("6")

    viewer.page.uncheck("#live")
    expect(viewer.page.locator("#refreshed")).to_have_text("paused")
    viewer.assert_nothing_ran()
