"""The viewer's dashboard in a real browser (see ``browser.py``): the endpoints table, the
traffic chart, search and people, each checked against what the stored events say; and a
screenshot of every view at two widths, with nothing wider than the window."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.collector import browser as shared
from tests.collector.browser import (
    IMG,
    NEEDLE,
    SCRIPT,
    SHOTS,
    WIDTHS,
    Traffic,
    Viewer,
    endpoint_rows,
    open_viewer,
    route_of,
    sync_api,
)

# The shared fixtures, under their names.
chromium, browser, traffic, viewer = shared.chromium, shared.browser, shared.traffic, shared.viewer

pytestmark = pytest.mark.timeout(900)
expect = sync_api.expect


def _table(viewer: Viewer, view: str) -> dict[str, list[str]]:
    """The cells of a summary table by the text of their first cell."""
    rows = viewer.rows(view)
    table = {}
    for index in range(rows.count()):
        cells = rows.nth(index).locator("td").all_text_contents()
        table[cells[0]] = cells[1:]
    return table


def test_the_endpoints_table_equals_the_stored_events(viewer: Viewer, traffic: Traffic) -> None:
    events = traffic.events()
    expected = endpoint_rows(events)
    expect(viewer.rows("endpoints")).to_have_count(len(expected))

    shown = {name: cells[:6] for name, cells in _table(viewer, "endpoints").items()}

    assert shown == expected
    assert "GET /items/{item_id}" in shown  # the framework's template...
    assert "GET /items/{id}" in shown  # ...or the normalised path
    assert f"GET /reports/{SCRIPT}" in shown  # markup in a route name, as text
    expect(viewer.status("endpoints")).to_contain_text(f"{len(expected)} endpoints")
    viewer.assert_nothing_ran()


def test_the_endpoints_table_sorts_and_opens_an_endpoint(viewer: Viewer, traffic: Traffic) -> None:
    expect(viewer.rows("endpoints")).not_to_have_count(0)
    viewer.page.click("#view-endpoints th:has-text('p50') button")
    header = viewer.page.locator("#view-endpoints th", has_text="p50")
    expect(header).to_have_attribute("aria-sort", "descending")
    viewer.page.click("#view-endpoints th:has-text('p50') button")
    expect(header).to_have_attribute("aria-sort", "ascending")

    viewer.row("POST /orders", "endpoints").click()

    expect(viewer.page.locator("#view-events")).to_be_visible()
    orders = [e for e in traffic.events(verb="POST") if route_of(e) == "/orders"]
    expect(viewer.rows()).to_have_count(len(orders))
    assert viewer.page.evaluate("location.hash") == "#events?verb=POST&route=%2Forders"
    expect(viewer.page.locator(".shared-filters [name=route]")).to_have_value("/orders")
    viewer.assert_nothing_ran()


def _calls(title: str) -> int:
    """The call count in an interval's tooltip ("2024-02-06 10:05:00.000: 12 calls (...)")."""
    found = re.search(r": ([\d,]+) calls?", title)
    assert found is not None, title
    return int(found[1].replace(",", ""))


def test_the_chart_counts_every_call_in_range(viewer: Viewer, traffic: Traffic) -> None:
    events = traffic.events()
    viewer.tab("traffic")
    expect(viewer.page.locator(".chart-total")).to_have_text(f"{len(events)} calls")
    titles = viewer.page.locator("#view-traffic g.bucket > title").all_text_contents()
    per_bucket = [_calls(title) for title in titles]
    assert sum(per_bucket) == len(events)
    errors = sum(1 for e in events if e.get("response", {}).get("status", 0) >= 500)
    expect(viewer.page.locator(".chart-totals .k5xx")).to_have_text(f"5xx {errors}")

    busiest = max(range(len(per_bucket)), key=per_bucket.__getitem__)
    viewer.page.locator("#view-traffic g.bucket").nth(busiest).click(force=True)

    expect(viewer.page.locator("#view-events")).to_be_visible()
    expect(viewer.rows()).to_have_count(per_bucket[busiest])
    expect(viewer.page.locator(".shared-filters [name=range]")).to_have_value("custom")
    viewer.assert_nothing_ran()


def test_search_finds_a_string_that_is_in_one_body(viewer: Viewer, traffic: Traffic) -> None:
    viewer.tab("events")
    viewer.filter("q", NEEDLE)

    expect(viewer.rows()).to_have_count(1)
    viewer.rows().first.click()
    expect(viewer.section("Request body").locator("pre")).to_contain_text(NEEDLE)
    # The other views describe the same events.
    viewer.tab("endpoints")
    expect(viewer.rows("endpoints")).to_have_count(1)
    expect(viewer.rows("endpoints").first.locator("td").nth(1)).to_have_text("1")
    viewer.tab("traffic")
    expect(viewer.page.locator(".chart-total")).to_have_text("1 call")
    viewer.filter("q", "no such words anywhere")
    expect(viewer.page.locator(".chart-total")).to_have_text("0 calls")
    viewer.assert_nothing_ran()


def test_people_list_users_and_their_calls(viewer: Viewer, traffic: Traffic) -> None:
    viewer.tab("people")
    alice_calls = traffic.events(user_id="alice")
    alice = viewer.row("alice", "people")
    expect(alice.locator("td")).to_have_text(
        ["alice", IMG, "", "acme", str(len(alice_calls)), "0", re.compile("."), "Profile"]
    )
    hostile = viewer.rows("people").filter(has_not_text="alice").filter(has_text="onerror")
    expect(hostile.locator("td").first).to_have_text(IMG)  # a user id that is markup

    alice.locator("button", has_text="Profile").click()
    expect(viewer.page.locator("#view-people .detail")).to_contain_text('"name": ')
    viewer.page.keyboard.press("Escape")
    expect(viewer.page.locator("#view-people .detail")).to_be_hidden()

    alice.locator("td").first.click()
    expect(viewer.page.locator("#view-events")).to_be_visible()
    expect(viewer.rows()).to_have_count(len(alice_calls))
    expect(viewer.page.locator(".shared-filters [name=user_id]")).to_have_value("alice")

    viewer.tab("people")
    viewer.page.click("#view-people .switch button:text('Companies')")
    expect(viewer.status("people")).to_contain_text("No companies in the calls that match")
    assert viewer.page.evaluate("location.hash") == "#people?user_id=alice&kind=companies"
    viewer.assert_nothing_ran()


def _no_overflow(viewer: Viewer) -> None:
    """Nothing is wider than the window: the page itself never scrolls sideways."""
    sizes = viewer.page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert sizes[0] <= sizes[1], sizes


@pytest.mark.parametrize("width", WIDTHS)
def test_every_view_fits_and_is_photographed(browser: Any, traffic: Traffic, width: int) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    failed = traffic.event("/boom")
    viewer = open_viewer(browser, traffic.collector.url + "/#endpoints", width)
    try:
        views = [
            ("endpoints", "#endpoints", "#view-endpoints tbody tr"),
            ("traffic", "#traffic", "#view-traffic svg"),
            ("events", "#events", "#view-events tbody tr"),
            ("event", f"#events/{failed['_id']}", "#view-events .exception"),
            ("search", f"#events?q={NEEDLE}", "#view-events tbody tr"),
            ("people", "#people", "#view-people tbody tr"),
            ("actions", "#actions", "#view-actions .list-status"),
        ]
        for name, hash_, ready in views:
            viewer.page.evaluate(f"location.hash = {hash_!r}")
            expect(viewer.page.locator(ready).first).to_be_visible()
            _no_overflow(viewer)
            viewer.page.screenshot(path=str(SHOTS / f"{name}-{width}.png"))
        viewer.assert_nothing_ran()
    finally:
        viewer.page.context.close()
