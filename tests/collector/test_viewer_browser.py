"""The viewer's event list and single events in a real browser (see ``browser.py``): filters,
bodies, markup in the data, permalinks, copy as curl, the exception of a failed call, live
refresh, and clearing the data."""

from __future__ import annotations

import base64
import re
import subprocess
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from moesif_agent.collector import LocalCollector
from tests.collector import browser as shared
from tests.collector.browser import (
    BINARY,
    IMG,
    NOTE,
    ORDER,
    SCRIPT,
    Traffic,
    Viewer,
    as_json,
    open_viewer,
    sync_api,
)
from tests.collector.helpers import APP_ID, make_event, post

# The shared fixtures, under their names.
chromium, browser, traffic, viewer = shared.chromium, shared.browser, shared.traffic, shared.viewer

pytestmark = pytest.mark.timeout(900)
expect = sync_api.expect


def test_the_events_are_listed_and_filtered(viewer: Viewer) -> None:
    viewer.tab("events")
    expect(viewer.rows()).to_have_count(11)
    orders = viewer.row("/orders").filter(has_text="alice")
    expect(orders.locator("td").nth(1)).to_have_text("POST")
    expect(orders.locator("td").nth(3)).to_have_text("200")
    expect(orders.locator("td").nth(5)).to_have_text("alice")
    # Millisecond wire times: whole milliseconds, never "0.0 ms".
    for text in viewer.rows().locator("td:nth-child(5)").all_text_contents():
        assert re.fullmatch(r"<1 ms|[\d,]+ ms", text), text
    # Path and query, the host on hover only.
    path = viewer.row("/items/1").locator("td").nth(2)
    expect(path).to_have_text("/items/1")
    expect(path).to_have_attribute("title", re.compile(r"^http://127\.0\.0\.1:\d+/items/1$"))
    expect(viewer.row("/missing/page").locator("td").nth(3)).to_have_text("404")

    viewer.filter("verb", "POST")
    expect(viewer.rows()).to_have_count(3)
    viewer.page.click(".shared-filters .filter-more summary")
    viewer.filter("path", "^/ord")
    expect(viewer.rows()).to_have_count(2)
    assert viewer.page.evaluate("location.hash") == "#events?verb=POST&path=%5E%2Ford"

    viewer.page.select_option(".shared-filters select[name=blocked]", "true")
    expect(viewer.rows()).to_have_count(0)
    expect(viewer.status("events")).to_have_text("No events match these filters.")
    viewer.page.click(".shared-filters button:text('Clear')")
    expect(viewer.rows()).to_have_count(11)

    viewer.filter("status", "4xx")
    expect(viewer.rows()).to_have_count(1)
    viewer.filter("status", "4yy")
    expect(viewer.status("events")).to_contain_text(
        "bad filter status: '4yy' is neither a status code"
    )
    viewer.assert_nothing_ran(bad_requests=1)


def test_markup_in_the_data_is_shown_as_text(viewer: Viewer, traffic: Traffic) -> None:
    viewer.tab("events")
    viewer.row("/orders").filter(has_text="alice").click()
    expect(viewer.detail().locator(".detail-title")).to_contain_text("POST")
    request_body = viewer.section("Request body").locator("pre")
    # Pretty-printed as JSON.stringify(body, null, 2) does: what json.dumps(indent=2) gives.
    assert request_body.text_content() == as_json(ORDER)
    headers = viewer.section("Request headers")
    expect(headers.locator("tr", has_text="X-Note").locator("td")).to_have_text(SCRIPT + IMG)
    expect(viewer.section("Response body").locator("pre")).to_contain_text(SCRIPT)

    # In a URI, a route template and a user id too.
    viewer.row("/search/").click()
    expect(viewer.detail().locator(".detail-title .uri")).to_have_text(f"/search/{SCRIPT}?q={IMG}")
    viewer.row("/reports/7").click()
    expect(viewer.section("Overview").locator("tr", has_text="route")).to_contain_text(SCRIPT)
    expect(viewer.row("/missing/page").locator("td").nth(5)).to_have_text(IMG)
    assert "window.__pwned = 1" in (viewer.page.locator("body").text_content() or "")
    viewer.assert_nothing_ran()


def test_base64_bodies_are_decoded_when_text(viewer: Viewer) -> None:
    viewer.tab("events")
    viewer.row("/notes").click()
    body = viewer.section("Request body")
    expect(body.locator(".body-label")).to_have_text(
        f"text (decoded from base64, {len(NOTE.encode())} bytes)"
    )
    assert body.locator("pre").text_content() == NOTE
    expect(viewer.section("Response body").locator("pre")).to_have_text(NOTE)

    viewer.row("/upload").click()  # the open detail follows the clicked row
    # The agent does not send binary bodies; it says so, and the page passes that on.
    expect(viewer.section("Request body")).to_contain_text(
        f"not captured by the agent: binary body not inspected ({len(BINARY)} bytes)"
    )
    viewer.page.keyboard.press("Escape")
    expect(viewer.detail()).to_be_hidden()
    viewer.assert_nothing_ran()


def test_a_binary_body_is_a_folded_hex_dump(browser: Any, collector: LocalCollector) -> None:
    event = make_event()
    event["request"].update(body=base64.b64encode(BINARY).decode(), transfer_encoding="base64")
    with httpx.Client(headers={"X-Moesif-Application-Id": APP_ID}) as http:
        assert post(http, collector.url + "/v1/events", event).status_code == 201
    viewer = open_viewer(browser, collector.url + "/#events")
    try:
        viewer.rows().first.click()
        body = viewer.section("Request body")
        expect(body.locator(".body-label")).to_have_text(f"binary, {len(BINARY)} bytes")
        expect(body.locator("details pre")).to_be_hidden()  # the hex dump stays folded
        body.locator("summary").click()
        expect(body.locator("details pre")).to_contain_text("000000  00 01 02 03")
        viewer.detail().locator("button", has_text="Copy as curl").click()
        command = viewer.detail().locator("pre.curl").text_content() or ""
        assert command.startswith(f"printf %s '{event['request']['body']}' | base64 -d | curl")
        viewer.assert_nothing_ran()
    finally:
        viewer.page.context.close()


def test_the_exception_of_a_failed_call_is_shown(viewer: Viewer, traffic: Traffic) -> None:
    failed = traffic.event("/boom")
    assert failed["metadata"]["_moesif"]["error"] in (
        "ZeroDivisionError",
        {"class": "ZeroDivisionError", "message": "division by zero"},
    )
    viewer.tab("events")
    row = viewer.row("/boom")
    expect(row).to_have_class(re.compile(r"\bfailed\b"))
    expect(row.locator(".badge.error")).to_have_attribute("title", "ZeroDivisionError")
    row.click()
    exception = viewer.detail().locator(".exception")
    expect(exception).to_be_visible()
    expect(exception.locator(".exception-class")).to_have_text("ZeroDivisionError")
    viewer.assert_nothing_ran()


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        ("ZeroDivisionError", ["ZeroDivisionError"]),
        (
            {"class": "KeyError", "message": "'user' <img src=x onerror=alert(1)>"},
            ["KeyError", "'user' <img src=x onerror=alert(1)>"],
        ),
    ],
)
def test_both_forms_of_the_exception_are_shown(
    browser: Any, collector: LocalCollector, error: Any, shown: list[str]
) -> None:
    event = make_event(metadata={"_moesif": {"error": error}})
    event["response"]["status"] = 500
    with httpx.Client(headers={"X-Moesif-Application-Id": APP_ID}) as http:
        assert post(http, collector.url + "/v1/events", event).status_code == 201
    viewer = open_viewer(browser, collector.url + "/#events")
    try:
        viewer.rows().first.click()
        parts = viewer.detail().locator(".exception .exception-class, .exception-message")
        expect(parts).to_have_text(shown)
        viewer.assert_nothing_ran()
    finally:
        viewer.page.context.close()


def test_a_permalink_opens_the_event_in_a_new_page(
    browser: Any, viewer: Viewer, traffic: Traffic
) -> None:
    wanted = traffic.event("/notes")
    viewer.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    viewer.tab("events")
    viewer.row("/notes").click()
    assert viewer.page.evaluate("location.hash") == f"#events/{wanted['_id']}"
    viewer.detail().locator("button", has_text="Copy link").click()
    expect(viewer.detail().locator(".copy-status").first).to_have_text("copied")
    link = viewer.page.evaluate("navigator.clipboard.readText()")
    assert link == f"{traffic.collector.url}/#events/{wanted['_id']}"

    fresh = open_viewer(browser, link)
    try:
        expect(fresh.detail()).to_be_visible()
        expect(fresh.detail().locator(".detail-title .uri")).to_have_text("/notes")
        expect(fresh.section("Overview")).to_contain_text(wanted["transaction_id"])
        expect(fresh.page.locator("#tab-events")).to_have_attribute("aria-selected", "true")
        fresh.assert_nothing_ran()
    finally:
        fresh.page.context.close()
    missing = open_viewer(browser, f"{traffic.collector.url}/#events/999999")
    try:
        expect(missing.detail()).to_contain_text("No event 999999 here")
    finally:
        missing.page.context.close()


def test_copy_as_curl_replays_the_call(viewer: Viewer, traffic: Traffic) -> None:
    original = next(e for e in traffic.events(route="/orders") if e.get("user_id") == "alice")
    viewer.tab("events")
    viewer.row("/orders").filter(has_text="alice").click()
    viewer.detail().locator("button", has_text="Copy as curl").click()
    command = viewer.detail().locator("pre.curl").text_content() or ""
    assert command.startswith(f"curl -X 'POST' '{traffic.app_url}/orders' \\\n")
    assert "X-Moesif-Transaction-Id" not in command  # a replay is a new call
    agent = traffic.instrument()

    replay = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    assert replay.returncode == 0, replay.stderr
    assert httpx.Response(200, content=replay.stdout).json() == ORDER
    assert agent.flush(timeout=10)

    replayed = [
        e
        for e in traffic.events(route="/orders", verb="POST")
        if e["transaction_id"] != original["transaction_id"] and e.get("user_id") == "alice"
    ]
    assert len(replayed) == 1
    assert replayed[0]["request"]["body"] == original["request"]["body"]
    assert replayed[0]["request"]["headers"]["X-Note"] == SCRIPT + IMG
    viewer.assert_nothing_ran()


def test_load_more_follows_the_cursor(browser: Any, collector: LocalCollector) -> None:
    with httpx.Client(base_url=collector.url, headers={"X-Moesif-Application-Id": APP_ID}) as http:
        batch = [make_event() for _ in range(130)]
        for n, event in enumerate(batch):
            event["request"]["time"] = f"2024-02-06T10:{n // 60:02d}:{n % 60:02d}.000Z"
        assert post(http, "/v1/events/batch", batch).status_code == 201
    viewer = open_viewer(browser, collector.url + "/#events")
    try:
        rows = viewer.rows()
        expect(rows).to_have_count(100)
        expect(rows.first).to_contain_text("10:02:09")  # newest first: event 129
        viewer.page.click("#view-events button.more")
        expect(rows).to_have_count(130)
        expect(rows.last).to_contain_text("10:00:00")
        expect(viewer.page.locator("#view-events button.more")).to_be_hidden()
    finally:
        viewer.page.context.close()


def test_actions_have_filters_of_their_own(browser: Any, collector: LocalCollector) -> None:
    actions = [
        {"action_name": name, "user_id": "u1", "request": {"uri": "https://a.test/"}}
        for name in ("Signed Up", "Purchased", "Purchased")
    ]
    with httpx.Client(headers={"X-Moesif-Application-Id": APP_ID}) as http:
        assert post(http, collector.url + "/v1/actions/batch", actions).status_code == 201
    viewer = open_viewer(browser, collector.url + "/#actions")
    try:
        expect(viewer.rows("actions")).to_have_count(3)
        expect(viewer.page.locator(".shared-filters")).to_be_hidden()
        viewer.page.fill("#view-actions [name=action_name]", "Purchased")
        viewer.page.press("#view-actions [name=action_name]", "Enter")
        expect(viewer.rows("actions")).to_have_count(2)
        assert viewer.page.evaluate("location.hash") == "#actions?action_name=Purchased"
        viewer.tab("events")  # the shared filters are not the actions'
        expect(viewer.page.locator(".shared-filters")).to_be_visible()
        assert viewer.page.evaluate("location.hash") == "#events"
        viewer.assert_nothing_ran()
    finally:
        viewer.page.context.close()


def test_clearing_the_data_asks_first(browser: Any, collector: LocalCollector) -> None:
    with httpx.Client(base_url=collector.url, headers={"X-Moesif-Application-Id": APP_ID}) as http:
        assert post(http, "/v1/events/batch", [make_event(), make_event()]).status_code == 201
    viewer = open_viewer(browser, collector.url + "/#events")
    try:
        expect(viewer.rows()).to_have_count(2)
        viewer.page.click("#clear")  # dismissed
        assert viewer.dialogs == [
            "Delete everything this collector stored (2 events)? This cannot be undone."
        ]
        assert collector.stats()["events"] == 2

        viewer.accept_dialogs = True
        viewer.page.click("#clear")
        expect(viewer.rows()).to_have_count(0)
        expect(viewer.page.locator("#stats")).to_contain_text("0 events")
        assert collector.stats()["events"] == 0
        viewer.assert_nothing_ran()
    finally:
        viewer.page.context.close()


def test_live_refresh_keeps_the_filters_and_the_open_detail(
    viewer: Viewer, traffic: Traffic
) -> None:
    """Runs last in this module: it adds an event to the shared collector."""
    viewer.tab("events")
    viewer.filter("verb", "POST")
    posts = len(traffic.events(verb="POST"))
    expect(viewer.rows()).to_have_count(posts)
    viewer.row("/notes").click()
    detail_before = viewer.detail().text_content()

    with httpx.Client(
        base_url=traffic.collector.url, headers={"X-Moesif-Application-Id": APP_ID}
    ) as http:
        event = make_event()
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        event["request"].update(verb="POST", uri="https://api.example.com/late/arrival", time=now)
        event["response"]["time"] = now
        assert post(http, "/v1/events", event).status_code == 201

    expect(viewer.rows()).to_have_count(posts + 1, timeout=10_000)  # polled every 3 s
    expect(viewer.rows().first).to_contain_text("/late/arrival")
    expect(viewer.page.locator(".shared-filters [name=verb]")).to_have_value("POST")
    expect(viewer.row("/notes")).to_have_class(re.compile(r"\bselected\b"))
    assert viewer.detail().is_visible()
    assert viewer.detail().text_content() == detail_before
    total = len(traffic.events())
    expect(viewer.page.locator("#tab-events .count")).to_have_text(str(total))

    viewer.page.uncheck("#live")
    expect(viewer.page.locator("#refreshed")).to_have_text("paused")
    viewer.assert_nothing_ran()
