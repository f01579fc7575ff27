"""The read API: filters, pagination, single items, stats."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from moesif_agent.collector import LocalCollector
from tests.collector.helpers import APP_ID, make_event, post

# (minute, verb, status or None, path, user, company, blocked_by, direction)
ROWS = [
    (0, "GET", 200, "/items/1", "u1", "c1", None, "Incoming"),
    (1, "POST", 201, "/items", "u1", "c1", None, "Incoming"),
    (2, "GET", 404, "/items/999", "u2", "c1", None, "Incoming"),
    (3, "DELETE", 500, "/items/2", "u2", "c2", None, "Incoming"),
    (4, "GET", 429, "/items/3", "u3", None, "quota-rule", "Incoming"),
    (5, "GET", 200, "/health", None, None, None, "Incoming"),
    (6, "post", 200, "/v2/orders", "u1", "c2", None, "Outgoing"),
    (7, "GET", None, "/slow", "u3", None, None, "Incoming"),
    (8, "PUT", 302, "/items/4", "u1", "c1", "geo-rule", "Incoming"),
]


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _event(row: tuple[Any, ...]) -> dict[str, Any]:
    minute, verb, status, path, user, company, blocked_by, direction = row
    event = make_event(direction=direction)
    event["request"].update(time=f"2024-02-06T10:{minute:02d}:00.000Z", verb=verb)
    event["request"]["uri"] = f"https://api.example.com{path}?q=1"
    if status is None:
        del event["response"]
    else:
        event["response"]["status"] = status
    for key, value in (("user_id", user), ("company_id", company), ("blocked_by", blocked_by)):
        if value is not None:
            event[key] = value
    return event


EVENTS = [_event(row) for row in ROWS]


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCollector]:
    db = tmp_path_factory.mktemp("read") / "c.db"
    with LocalCollector(db) as collector, httpx.Client(base_url=collector.url) as client:
        client.headers["X-Moesif-Application-Id"] = APP_ID
        # Sent out of time order: the list is ordered by request.time, not by arrival.
        assert post(client, "/v1/events/batch", EVENTS[4:]).status_code == 201
        assert post(client, "/v1/events/batch", EVENTS[:4], compress=True).status_code == 201
        post(client, "/v1/users/batch", [{"user_id": f"u{i}", "company_id": "c1"} for i in (1, 2)])
        post(client, "/v1/users", {"user_id": "u3", "company_id": "c2"})
        post(client, "/v1/companies/batch", [{"company_id": "c1"}, {"company_id": "c/2"}])
        post(
            client,
            "/v1/subscriptions",
            {"subscription_id": "s1", "company_id": "c1", "status": "active"},
        )
        post(
            client,
            "/v1/actions/batch",
            [
                {
                    "action_name": "Signed Up",
                    "user_id": "u1",
                    "request": {"uri": "https://a.com/", "time": "2024-02-06T09:00:00Z"},
                },
                {"action_name": "Purchased", "user_id": "u2", "request": {"uri": "https://a.com/"}},
            ],
        )
        yield collector


@pytest.fixture(scope="module")
def api(populated: LocalCollector) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=populated.url) as client:
        yield client


def _minutes(items: list[dict[str, Any]]) -> list[int]:
    return [int(item["request"]["time"][14:16]) for item in items]


@pytest.mark.parametrize(
    ("filters", "minutes"),
    [
        ({}, [8, 7, 6, 5, 4, 3, 2, 1, 0]),
        ({"verb": "GET"}, [7, 5, 4, 2, 0]),
        ({"verb": "post"}, [6, 1]),
        ({"status": "200"}, [6, 5, 0]),
        ({"status": "2xx"}, [6, 5, 1, 0]),
        ({"status": "4XX"}, [4, 2]),
        ({"status": "3xx"}, [8]),
        ({"path": "^/items/[0-9]+$"}, [8, 4, 3, 2, 0]),
        ({"path": "orders"}, [6]),
        ({"route": "/items/{id}"}, [8, 4, 3, 2, 0]),
        ({"route": "/v2/orders"}, [6]),
        ({"route": "/items/[0-9]+"}, []),  # a template, not a regex
        ({"user_id": "u1"}, [8, 6, 1, 0]),
        ({"company_id": "c2"}, [6, 3]),
        ({"blocked": "true"}, [8, 4]),
        ({"blocked": "false", "verb": "GET"}, [7, 5, 2, 0]),
        ({"direction": "Outgoing"}, [6]),
        ({"time__gt": "2024-02-06T10:05:00Z"}, [8, 7, 6]),
        ({"time__lt": "2024-02-06T10:02:00"}, [1, 0]),
        ({"time__gt": "2024-02-06T11:00:00+01:00", "time__lt": "2024-02-06T10:03:00Z"}, [2, 1]),
        ({"user_id": "u1", "status": "2xx", "verb": "GET"}, [0]),
        ({"user_id": "nobody"}, []),
    ],
)
def test_event_filters(filters: dict[str, str], minutes: list[int], api: httpx.Client) -> None:
    response = api.get("/api/events", params=filters)

    assert response.status_code == 200, response.text
    assert _minutes(response.json()["items"]) == minutes
    assert response.json()["next_cursor"] is None


def test_transaction_id_filter_and_get_by_id(api: httpx.Client) -> None:
    wanted = EVENTS[3]
    listed = api.get("/api/events", params={"transaction_id": wanted["transaction_id"]}).json()
    (item,) = listed["items"]

    one = api.get(f"/api/events/{item['_id']}")

    assert one.status_code == 200
    assert one.json() == item
    assert {k: v for k, v in item.items() if not k.startswith("_")} == wanted
    assert api.get("/api/events/123456").status_code == 404
    assert api.get("/api/events/abc").json() == {"error": "no event with id 'abc'"}


def test_pagination_follows_cursors(api: httpx.Client) -> None:
    seen: list[int] = []
    pages = 0
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = api.get("/api/events", params=params).json()
        pages += 1
        assert len(page["items"]) <= 2
        seen.extend(_minutes(page["items"]))
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]

    assert pages == 5
    assert seen == [8, 7, 6, 5, 4, 3, 2, 1, 0]


def test_pagination_with_a_filter_and_an_exact_last_page(api: httpx.Client) -> None:
    first = api.get("/api/events", params={"verb": "GET", "limit": 3}).json()
    second = api.get(
        "/api/events", params={"verb": "GET", "limit": 3, "cursor": first["next_cursor"]}
    ).json()
    exact = api.get("/api/events", params={"limit": 9}).json()

    assert _minutes(first["items"]) == [7, 5, 4]
    assert _minutes(second["items"]) == [2, 0]
    assert second["next_cursor"] is None
    assert exact["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "abc"}, "bad filter status: 'abc' is neither a status code"),
        ({"status": "6xx"}, "bad filter status"),
        ({"limit": "0"}, "bad filter limit: '0' is not an integer from 1 to 1000"),
        ({"limit": "1001"}, "is not an integer from 1 to 1000"),
        ({"limit": "ten"}, "bad filter limit"),
        ({"time__gt": "yesterday"}, "bad filter time__gt: 'yesterday' is not an ISO 8601 time"),
        ({"path": "(unclosed"}, "bad filter path: '(unclosed' is not a valid regular"),
        # re.compile raises OverflowError and RecursionError for these, not re.error.
        ({"path": "a{99999999999}"}, "bad filter path: 'a{99999999999}' is not a valid regular"),
        ({"path": "a{1,99999999999}"}, "(the repetition number is too large)"),
        (
            {"path": "(" * 1000 + ")" * 1000},
            "is not a valid regular expression (groups nested too deeply)",
        ),
        ({"path": "(?:" * 1000 + ")" * 1000}, "bad filter path: '(?:(?:"),
        # str.isdigit() is true of these, int() refuses them; and SQLite integers are 64-bit.
        ({"status": "\u00b2"}, "bad filter status: '\u00b2' is neither a status code"),
        ({"status": "\u0664\u0660\u0664"}, "bad filter status"),  # 404 in Arabic-Indic digits
        ({"status": "9" * 20}, "bad filter status: '99999999999999999999' is neither"),
        ({"status": "1000"}, "is neither a status code (0 to 999)"),
        ({"limit": "\u00b2"}, "bad filter limit: '\u00b2' is not an integer from 1 to 1000"),
        ({"limit": "9" * 20}, "is not an integer from 1 to 1000"),
        ({"cursor": _cursor("events:" + "9" * 20 + ".1")}, "bad filter cursor: not a cursor"),
        ({"cursor": _cursor("events:1." + "9" * 19)}, "bad filter cursor: not a cursor"),
        ({"cursor": _cursor("events:1.1_0")}, "bad filter cursor: not a cursor"),
        ({"blocked": "maybe"}, "bad filter blocked: 'maybe' is not a boolean"),
        ({"cursor": "!!!"}, "bad filter cursor: not a cursor"),
        ({"cursor": "dXNlcnM6MQ"}, "not a cursor of /api/events"),
        ({"colour": "red"}, "bad filter colour: unknown filter for /api/events; known: verb,"),
        ([("verb", "GET"), ("verb", "POST")], "bad filter verb: give it once"),
    ],
)
def test_bad_filters_are_400(params: Any, message: str, api: httpx.Client) -> None:
    response = api.get("/api/events", params=params)

    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize("resource", ["events", "actions"])
@pytest.mark.parametrize("key", ["\u00b2", "\u0664", "9" * 19, "9" * 40, "-1", " 1", "0"])
def test_item_keys_that_cannot_exist_are_404(resource: str, key: str, api: httpx.Client) -> None:
    response = api.get(f"/api/{resource}/{key}")

    assert response.status_code == 404
    assert response.json()["error"].startswith(f"no {resource[:-1]} with id ")


def test_events_in_their_wire_format_with_store_fields(api: httpx.Client) -> None:
    items = api.get("/api/events").json()["items"]

    assert [item["_id"] for item in items] == [5, 4, 3, 2, 1, 9, 8, 7, 6]  # arrival order ids
    for item in items:
        assert set(item) - set(EVENTS[0]) - {"user_id", "company_id", "blocked_by"} == {
            "_id",
            "_received_at",
        }
    stored = {i["transaction_id"]: {k: v for k, v in i.items() if k[0] != "_"} for i in items}
    assert stored == {e["transaction_id"]: e for e in EVENTS}


def test_local_collector_readers(populated: LocalCollector) -> None:
    assert _minutes(populated.events(status="4xx", blocked=False)) == [2]
    assert len(populated.events(limit=2)) == 9  # follows the cursors


def test_stats(populated: LocalCollector, api: httpx.Client) -> None:
    assert (
        api.get("/api/stats").json()
        == populated.stats()
        == {
            "events": 9,
            "actions": 2,
            "users": 3,
            "companies": 2,
            "subscriptions": 1,
            "events_by_status": {"2xx": 4, "3xx": 1, "4xx": 2, "5xx": 1, "no_response": 1},
            "blocked": 2,
        }
    )


def test_profiles_and_actions(populated: LocalCollector, api: httpx.Client) -> None:
    assert [u["user_id"] for u in populated.users()] == ["u3", "u2", "u1"]
    assert [u["user_id"] for u in populated.users(company_id="c1")] == ["u2", "u1"]
    assert api.get("/api/users/u2").json()["company_id"] == "c1"
    assert api.get("/api/companies/c/2").json()["company_id"] == "c/2"
    assert api.get("/api/companies/x").json() == {"error": "no company with company_id 'x'"}
    assert api.get("/api/subscriptions/s1").json()["status"] == "active"
    assert api.get("/api/users/nobody").status_code == 404
    assert api.get("/api/users/nobody").json() == {"error": "no user with user_id 'nobody'"}
    # Actions without a time are ordered by when they arrived (after 2024, so first).
    actions = populated.actions()
    assert [a["action_name"] for a in actions] == ["Purchased", "Signed Up"]
    assert [a["action_name"] for a in populated.actions(user_id="u1")] == ["Signed Up"]
    assert populated.actions(time__lt="2024-02-07") == actions[1:]
    assert api.get(f"/api/actions/{actions[0]['_id']}").json() == actions[0]
    bad = api.get("/api/users", params={"verb": "GET"})
    assert bad.status_code == 400
    assert "known: company_id, limit, cursor" in bad.json()["error"]


def test_api_index_lists_the_endpoints(api: httpx.Client) -> None:
    index = api.get("/api").json()
    assert "POST /v1/events/batch" in index["collector_api"]
    assert "GET /api/events/{id}" in index["read_api"]
    assert "GET /api/users/{user_id}" in index["read_api"]
    for endpoint in ("GET /api/endpoints", "GET /api/timeseries", "GET /api/people/users"):
        assert endpoint in index["read_api"]
    assert "DELETE /api/data" in index["read_api"]


def test_reads_do_not_need_an_application_id(tmp_path: Path) -> None:
    with LocalCollector(tmp_path / "c.db", app_ids=["secret"]) as collector:
        assert httpx.get(collector.url + "/api/stats").status_code == 200
