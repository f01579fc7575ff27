"""The dashboard's read API: endpoint summaries, time series, people and full-text search,
each checked against figures computed here from the stored events themselves."""

from __future__ import annotations

import base64
import math
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from moesif_agent.collector import LocalCollector
from moesif_agent.collector._derive import normalise_path
from tests.collector.helpers import APP_ID, make_event, post, version_1_database

UUID = "6f1c2b3a-1d2e-4f5a-8b9c-0d1e2f3a4b5c"
# (second, verb, path, status or None, duration ms, weight or None, user, metadata.route)
ROWS = [
    (0, "GET", "/items/1", 200, 3, None, "alice", None),
    (1, "GET", "/items/2", 200, 0, None, "alice", None),
    (2, "GET", "/items/3", 404, 12, 10, "bob", None),
    (3, "GET", "/items/4", 500, 250, None, "bob", None),
    (65, "GET", "/items/5", 200, 7, 3, None, None),
    (66, "POST", "/items", 201, 40, None, "alice", None),
    (70, "POST", "/items", 422, 5, None, "carol", None),
    (130, "GET", f"/users/{UUID}/orders", 200, 9, None, "carol", None),
    (131, "GET", "/blobs/0123456789abcdef0123", 200, 1, None, None, None),
    (190, "GET", "/things/7", 301, 2, None, None, "/things/<int:id>"),
    (200, "GET", "/slow", None, None, None, "alice", None),
]
ROUTES = {
    "/items/1": "/items/{id}",
    "/items": "/items",
    f"/users/{UUID}/orders": "/users/{id}/orders",
    "/blobs/0123456789abcdef0123": "/blobs/{id}",
    "/things/7": "/things/<int:id>",
    "/slow": "/slow",
}


def _time(second: int, ms: int = 0) -> str:
    return f"2024-02-06T10:{second // 60:02d}:{second % 60:02d}.{ms:03d}Z"


def _event(row: tuple[Any, ...]) -> dict[str, Any]:
    second, verb, path, status, duration, weight, user, route = row
    event = make_event()
    event["request"].update(time=_time(second), verb=verb, uri=f"http://api.test{path}?x=1")
    if status is None:
        del event["response"]
    else:
        event["response"].update(status=status, time=_time(second, duration))
    for key, value in (("weight", weight), ("user_id", user)):
        if value is not None:
            event[key] = value
    if route is not None:
        event["metadata"] = {"route": route}
    return event


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    db = tmp_path_factory.mktemp("summary") / "c.db"
    with LocalCollector(db) as collector, httpx.Client(base_url=collector.url) as client:
        client.headers["X-Moesif-Application-Id"] = APP_ID
        assert post(client, "/v1/events/batch", [_event(row) for row in ROWS]).status_code == 201
        profiles = [
            {"user_id": "alice", "metadata": {"email": "alice@example.com"}},
            {"user_id": "dave", "metadata": {"email": "dave@example.com"}},
        ]
        assert post(client, "/v1/users/batch", profiles).status_code == 201
        yield client


def _stored(api: httpx.Client, **filters: str) -> list[dict[str, Any]]:
    return api.get("/api/events", params={**filters, "limit": 1000}).json()["items"]


def _route(event: dict[str, Any]) -> str:
    path = httpx.URL(event["request"]["uri"]).path
    return (event.get("metadata") or {}).get("route") or ROUTES.get(path, "/items/{id}")


def _duration(event: dict[str, Any]) -> int | None:
    if "response" not in event:
        return None
    end, start = event["response"]["time"], event["request"]["time"]
    return int(end[20:23]) - int(start[20:23])  # same second in these events


def _nearest_rank(values: list[int], p: int) -> float | None:
    """Percentile of ``values`` (each call listed once per unit of weight), nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[math.ceil(p / 100 * len(ordered)) - 1])


def _expected_endpoints(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        groups[(event["request"]["verb"], _route(event))].append(event)
    expected = []
    for (verb, route), members in groups.items():
        weight = [e.get("weight", 1) for e in members]
        calls = sum(weight)
        status = [e.get("response", {}).get("status") for e in members]
        errors_4xx = sum(w for w, s in zip(weight, status, strict=True) if s and 400 <= s < 500)
        errors_5xx = sum(w for w, s in zip(weight, status, strict=True) if s and s >= 500)
        durations = [d for e, w in zip(members, weight, strict=True) for d in [_duration(e)] * w]
        timed = [d for d in durations if d is not None]
        expected.append(
            {
                "verb": verb,
                "route": route,
                "calls": calls,
                "events": len(members),
                "errors_4xx": errors_4xx,
                "errors_5xx": errors_5xx,
                "error_rate_4xx": errors_4xx / calls,
                "error_rate_5xx": errors_5xx / calls,
                "p50_ms": _nearest_rank(timed, 50),
                "p95_ms": _nearest_rank(timed, 95),
                "p99_ms": _nearest_rank(timed, 99),
                "last_seen": max(e["request"]["time"] for e in members),
            }
        )
    return sorted(expected, key=lambda item: (-item["calls"], item["route"], item["verb"]))


def test_endpoints_equal_the_figures_of_the_stored_events(api: httpx.Client) -> None:
    summary = api.get("/api/endpoints").json()

    assert summary["items"] == _expected_endpoints(_stored(api))
    assert summary["calls"] == 11 + 9 + 2  # two weighted events: 10 and 3
    items = {(i["verb"], i["route"]): i for i in summary["items"]}
    assert set(items) == {
        ("GET", "/items/{id}"),
        ("POST", "/items"),
        ("GET", "/users/{id}/orders"),
        ("GET", "/blobs/{id}"),
        ("GET", "/things/<int:id>"),
        ("GET", "/slow"),
    }
    items_get = items[("GET", "/items/{id}")]
    assert (items_get["calls"], items_get["errors_4xx"], items_get["errors_5xx"]) == (16, 10, 1)
    # 0, 3, 7 x3, 12 x10, 250: ranks 8, 16 and 16 of 16
    assert (items_get["p50_ms"], items_get["p95_ms"], items_get["p99_ms"]) == (12.0, 250.0, 250.0)
    assert items[("GET", "/slow")]["p50_ms"] is None  # no response, no duration


@pytest.mark.parametrize(
    "filters",
    [
        {"verb": "GET"},
        {"status": "2xx"},
        {"user_id": "alice"},
        {"time__gt": _time(60), "time__lt": _time(180)},
        {"route": "/items/{id}", "status": "4xx"},
        {"q": "api.test"},
    ],
)
def test_endpoints_take_the_event_filters(api: httpx.Client, filters: dict[str, str]) -> None:
    summary = api.get("/api/endpoints", params=filters).json()
    assert summary["items"] == _expected_endpoints(_stored(api, **filters))


def test_the_time_series_counts_every_call_in_range(api: httpx.Client) -> None:
    series = api.get("/api/timeseries", params={"interval": "60"}).json()

    assert series["interval_seconds"] == 60
    assert series["start"] == "2024-02-06T10:00:00.000Z"
    assert series["end"] == "2024-02-06T10:04:00.000Z"
    assert [b["start"][11:16] for b in series["buckets"]] == ["10:00", "10:01", "10:02", "10:03"]
    first = series["buckets"][0]
    assert {k: first[k] for k in ("calls", "2xx", "3xx", "4xx", "5xx", "other")} == {
        "calls": 13,
        "2xx": 2,
        "3xx": 0,
        "4xx": 10,
        "5xx": 1,
        "other": 0,
    }
    assert (first["p50_ms"], first["p95_ms"]) == (12.0, 250.0)  # 10 of the 13 calls took 12
    assert series["buckets"][3]["other"] == 1  # no response
    assert series["calls"] == sum(e.get("weight", 1) for e in _stored(api)) == 22
    assert series["events"] == len(ROWS)


@pytest.mark.parametrize("filters", [{"q": "api.test"}, {"verb": "POST"}, {"status": "2xx"}])
def test_the_time_series_takes_the_event_filters(
    api: httpx.Client, filters: dict[str, str]
) -> None:
    """Searches take the one-query path, other filters one query per interval: both agree
    with the event list."""
    series = api.get("/api/timeseries", params={**filters, "interval": "60"}).json()
    matching = _stored(api, **filters)
    assert series["events"] == len(matching)
    assert series["calls"] == sum(e.get("weight", 1) for e in matching)
    unfiltered = api.get("/api/timeseries", params={"interval": "60"}).json()
    if "q" in filters:  # every event has the host in its URI
        assert series["buckets"] == unfiltered["buckets"]


def test_the_time_series_fits_the_range_it_is_given(api: httpx.Client) -> None:
    since, until = "2024-02-06T10:01:00Z", "2024-02-06T10:02:00Z"
    series = api.get("/api/timeseries", params={"time__gt": since, "time__lt": until}).json()

    assert series["interval_seconds"] == 1  # 60 s in at most 120 buckets
    assert len(series["buckets"]) == 60
    in_range = _stored(api, time__gt=since, time__lt=until)
    assert series["events"] == len(in_range) == 3
    assert series["calls"] == sum(e.get("weight", 1) for e in in_range)
    assert api.get("/api/timeseries", params={"user_id": "nobody"}).json()["buckets"] == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"interval": "0"}, "bad filter interval: '0' is not a number of seconds"),
        ({"interval": "\u00b2"}, "bad filter interval: '\u00b2' is not a number of seconds"),
        ({"interval": "\u0663"}, "bad filter interval:"),  # an Arabic-Indic 3
        ({"interval": "-60"}, "bad filter interval:"),
        ({"interval": "9" * 20}, "bad filter interval:"),
        ({"interval": "10" + "0" * 15}, "bad filter interval:"),
        ({"interval": "31622401"}, "at most 31622400 (a year)"),
        ({"interval": "1", "time__gt": "2000-01-01T00:00:00Z"}, "bad filter interval:"),
        ({"limit": "5"}, "unknown filter for /api/timeseries"),
    ],
)
def test_bad_time_series_parameters(
    api: httpx.Client, params: dict[str, str], message: str
) -> None:
    response = api.get("/api/timeseries", params=params)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_the_largest_weights_are_summed_without_overflow(http: httpx.Client) -> None:
    # Two events of weight 2**63-1 used to be stored, then every summary was a 503.
    heaviest = 2**31 - 1
    too_heavy = [_event(ROWS[0]) | {"weight": 2**63 - 1}, _event(ROWS[1]) | {"weight": 2**63 - 1}]
    refused = post(http, "/v1/events/batch", too_heavy)
    stored = post(http, "/v1/events/batch", [_event(row) | {"weight": heaviest} for row in ROWS])

    assert refused.status_code == 400
    assert refused.json()["field"] == "weight"
    assert stored.status_code == 201
    endpoints = http.get("/api/endpoints")
    series = http.get("/api/timeseries")
    people = http.get("/api/people/users")
    assert endpoints.status_code == series.status_code == people.status_code == 200
    assert endpoints.json()["calls"] == series.json()["calls"] == len(ROWS) * heaviest
    identified = sum(1 for row in ROWS if row[6] is not None)
    assert sum(item["calls"] for item in people.json()["items"]) == identified * heaviest


def test_the_longest_interval_is_a_year(api: httpx.Client) -> None:
    series = api.get("/api/timeseries", params={"interval": "31622400"})

    assert series.status_code == 200
    assert series.json()["interval_seconds"] == 31622400
    assert series.json()["calls"] == 11 + 9 + 2


def test_people_merge_traffic_and_profiles(api: httpx.Client) -> None:
    users = api.get("/api/people/users").json()
    by_id = {item["id"]: item for item in users["items"]}

    assert [item["id"] for item in users["items"]] == ["bob", "alice", "carol", "dave"]
    assert by_id["bob"] == {
        "id": "bob",
        "calls": 11,
        "events": 2,
        "errors": 11,
        "last_seen": _time(3),
        "profile": None,
    }
    assert by_id["alice"]["calls"] == 4
    assert by_id["alice"]["profile"]["metadata"] == {"email": "alice@example.com"}
    assert by_id["dave"]["calls"] == 0  # a profile without traffic
    filtered = api.get("/api/people/users", params={"time__gt": _time(60)}).json()
    assert [item["id"] for item in filtered["items"]] == ["alice", "carol"]
    assert api.get("/api/people/companies").json() == {"kind": "companies", "items": [], "total": 0}


def test_search_finds_words_in_bodies_headers_and_uris(http: httpx.Client) -> None:
    only_here = make_event()
    only_here["response"]["body"] = {"message": "the flux capacitor overheated"}
    text_body = make_event()
    text_body["request"].update(
        body=base64.b64encode("naïve plain text, zebra-crossing".encode()).decode(),
        transfer_encoding="base64",
    )
    header = make_event()
    header["request"]["headers"]["X-Trace"] = "trace-abc123"
    escaped = make_event()
    escaped["request"]["body"] = {"text": 'first line\nsecond "quoted" café'}
    sent = [only_here, text_body, header, escaped]
    assert post(http, "/v1/events/batch", sent).status_code == 201

    def found(**params: str) -> list[str]:
        items = http.get("/api/events", params=params).json()["items"]
        return [item["transaction_id"] for item in items]

    assert found(q="flux capacitor") == [only_here["transaction_id"]]
    assert found(q="capac") == [only_here["transaction_id"]]  # the last word is a prefix
    assert found(q="NAIVE zebra-crossing") == [text_body["transaction_id"]]
    assert found(q="trace-abc123") == [header["transaction_id"]]
    # Sent as "first line\\nsecond \\"quoted\\" caf\\u00e9": found as the words they are.
    assert found(q="second quoted cafe") == [escaped["transaction_id"]]
    assert found(q="flux", verb="POST") == []
    assert len(found(q="api.example.com")) == 4
    assert found(q='" OR NEAR(x AND *') == []  # input is words, never FTS5 syntax
    response = http.get("/api/events", params={"q": "<>"})
    assert response.status_code == 400
    assert "has no word to search for" in response.json()["error"]


def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    event = _event(ROWS[2])
    event["request"]["body"] = {"note": "migrated words"}
    version_1_database(db, [(None, event)])

    with LocalCollector(db) as collector, httpx.Client() as client:
        (item,) = client.get(collector.url + "/api/endpoints").json()["items"]
        found = client.get(collector.url + "/api/events", params={"q": "migrated"}).json()

    assert (item["route"], item["calls"], item["p50_ms"]) == ("/items/{id}", 10, 12.0)
    assert [e["transaction_id"] for e in found["items"]] == [event["transaction_id"]]


def test_weights_a_version_1_collector_accepted_are_bounded_when_migrated(tmp_path: Path) -> None:
    # Version 1 took any non-negative weight: 10**30 stopped the migration (OverflowError),
    # two of 2**63-1 overflowed every summary.
    db = tmp_path / "old.db"
    heavy = [_event(ROWS[0]) | {"weight": 10**30}, _event(ROWS[1]) | {"weight": 2**63 - 1}]
    version_1_database(db, [(None, event) for event in heavy])

    with LocalCollector(db) as collector, httpx.Client(base_url=collector.url) as client:
        endpoints = client.get("/api/endpoints")
        series = client.get("/api/timeseries")
        stored = client.get("/api/events").json()["items"]

    assert endpoints.status_code == series.status_code == 200
    assert endpoints.json()["calls"] == series.json()["calls"] == 2 * (2**31 - 1)
    assert sorted(event["weight"] for event in stored) == [2**63 - 1, 10**30]  # as sent


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/items/42", "/items/{id}"),
        ("/items/42/", "/items/{id}/"),
        (f"/users/{UUID.upper()}/orders/7", "/users/{id}/orders/{id}"),
        ("/objects/507f1f77bcf86cd799439011", "/objects/{id}"),
        ("/v2/items", "/v2/items"),
        ("/files/report-2024.pdf", "/files/report-2024.pdf"),
        ("/hex/deadbeef", "/hex/deadbeef"),  # short hex: a word, not an id
        ("/", "/"),
    ],
)
def test_paths_are_normalised_into_routes(path: str, route: str) -> None:
    assert normalise_path(path) == route
