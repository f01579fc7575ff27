"""Writes through the Collector API: the spec's examples, gzip, idempotency, profile merges."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from moesif_agent.collector import LocalCollector
from tests.collector.helpers import DATA, make_event, post, without_store_fields

SEED_FILES = sorted(DATA.glob("seed*.json"))
_KEYS = {
    "events": "transaction_id",
    "actions": "transaction_id",
    "users": "user_id",
    "companies": "company_id",
    "subscriptions": "subscription_id",
}


def _endpoint(path: Path) -> tuple[str, bool]:
    """seed002_users_batch_curl.json -> ("users", True)."""
    match = re.fullmatch(r"seed\d+_([a-z]+)(_batch)?(?:_curl|_example)?\.json", path.name)
    assert match, path.name
    return match.group(1), bool(match.group(2))


def test_every_seed_example_is_in_the_data_files() -> None:
    covered = {(path.name[:7], *_endpoint(path)) for path in SEED_FILES}
    for kind in _KEYS:
        for batch in (False, True):
            assert ("seed002", kind, batch) in covered
    assert ("seed000", "events", False) in covered
    assert ("seed000", "events", True) in covered


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.stem)
def test_seed_examples_are_accepted_and_stored_as_sent(
    path: Path, collector: LocalCollector, http: httpx.Client
) -> None:
    kind, batch = _endpoint(path)
    payload = json.loads(path.read_text())
    sent = payload if batch else [payload]

    response = post(http, f"/v1/{kind}{'/batch' if batch else ''}", payload)

    assert response.status_code == 201, response.text
    assert response.json() == {"received": len(sent), "stored": len(sent)}
    assert response.headers["X-Moesif-Config-ETag"]
    listed = getattr(collector, kind)()
    assert [without_store_fields(item) for item in listed] == list(reversed(sent))
    for item in listed:
        assert isinstance(item["_id"], int)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item["_received_at"])
    if kind in ("users", "companies", "subscriptions"):
        for item in sent:
            one = http.get(f"/api/{kind}/{item[_KEYS[kind]]}")
            assert one.status_code == 200
            assert without_store_fields(one.json()) == item


def test_gzip_batch(collector: LocalCollector, http: httpx.Client) -> None:
    events = [make_event() for _ in range(50)]

    response = post(http, "/v1/events/batch", events, compress=True)

    assert response.status_code == 201, response.text
    assert response.json() == {"received": 50, "stored": 50}
    stored = {e["transaction_id"]: without_store_fields(e) for e in collector.events()}
    assert stored == {e["transaction_id"]: e for e in events}


def test_gzip_without_content_encoding_header_is_detected(
    collector: LocalCollector, http: httpx.Client
) -> None:
    event = make_event()
    body = gzip.compress(json.dumps([event]).encode())

    response = http.post("/v1/events/batch", content=body)

    assert response.status_code == 201, response.text
    assert collector.events(transaction_id=event["transaction_id"])


def test_the_spec_deduplication_example(collector: LocalCollector, http: httpx.Client) -> None:
    a, b, c, d = (make_event() for _ in range(4))

    first = post(http, "/v1/events/batch", [a, b])
    second = post(http, "/v1/events/batch", [c], compress=True)
    third = post(http, "/v1/events/batch", [a, c, d])

    assert [r.json()["stored"] for r in (first, second, third)] == [2, 1, 1]
    assert all(r.status_code == 201 for r in (first, second, third))
    assert collector.stats()["events"] == 4
    ids = sorted(e["transaction_id"] for e in collector.events())
    assert ids == sorted(e["transaction_id"] for e in (a, b, c, d))


def test_duplicates_within_one_batch_and_through_the_single_endpoint(
    collector: LocalCollector, http: httpx.Client
) -> None:
    event = make_event()
    assert post(http, "/v1/events/batch", [event, event]).json()["stored"] == 1
    assert post(http, "/v1/events", event).json() == {"received": 1, "stored": 0}
    assert collector.stats()["events"] == 1


def test_events_without_transaction_id_are_always_stored(
    collector: LocalCollector, http: httpx.Client
) -> None:
    event = make_event()
    del event["transaction_id"]

    post(http, "/v1/events", event)
    post(http, "/v1/events/batch", [event, event])

    assert collector.stats()["events"] == 3


def test_actions_are_deduplicated_by_transaction_id(
    collector: LocalCollector, http: httpx.Client
) -> None:
    action = {
        "action_name": "Clicked Sign Up",
        "transaction_id": "a3765025-46ec-45dd-bc83-b136c8d1d257",
        "request": {"uri": "https://acmeinc.com/pricing"},
    }
    anonymous = {"action_name": "Viewed", "request": {"uri": "https://acmeinc.com/"}}

    post(http, "/v1/actions", action)
    post(http, "/v1/actions/batch", [action, anonymous, anonymous])

    assert collector.stats()["actions"] == 3
    assert collector.actions(action_name="Clicked Sign Up") == [
        {**action, "_id": 1, "_received_at": collector.actions()[-1]["_received_at"]}
    ]


def test_user_updates_merge_recursively(collector: LocalCollector, http: httpx.Client) -> None:
    post(
        http,
        "/v1/users",
        {
            "user_id": "u1",
            "company_id": "c1",
            "campaign": {"utm_source": "google", "utm_medium": "cpc"},
            "metadata": {
                "email": "old@example.com",
                "name": "Ann",
                "sales_info": {"stage": "Lead", "owner": "mary"},
                "tags": ["a", "b"],
            },
        },
    )
    post(
        http,
        "/v1/users/batch",
        [
            {
                "user_id": "u1",
                "company_id": "c2",
                "campaign": {"utm_medium": "email"},
                "metadata": {
                    "email": "new@example.com",
                    "sales_info": {"stage": "Customer"},
                    "tags": ["c"],
                },
            },
            {"user_id": "u1", "metadata": {"plan": "pro"}},
        ],
    )

    users = collector.users()
    assert len(users) == 1
    assert without_store_fields(users[0]) == {
        "user_id": "u1",
        "company_id": "c2",
        "campaign": {"utm_source": "google", "utm_medium": "email"},
        "metadata": {
            "email": "new@example.com",
            "name": "Ann",
            "sales_info": {"stage": "Customer", "owner": "mary"},
            "tags": ["c"],
            "plan": "pro",
        },
    }
    assert collector.users(company_id="c2")[0]["user_id"] == "u1"
    assert collector.users(company_id="c1") == []
    assert users[0]["_created_at"] <= users[0]["_received_at"]


def test_company_and_subscription_updates_merge(
    collector: LocalCollector, http: httpx.Client
) -> None:
    post(http, "/v1/companies", {"company_id": "c1", "metadata": {"a": {"x": 1}}})
    post(http, "/v1/companies", {"company_id": "c1", "company_domain": "acme.com"})
    post(http, "/v1/companies", {"company_id": "c1", "metadata": {"a": {"y": 2}}})
    subscription = {"subscription_id": "s1", "company_id": "c1", "status": "trialing"}
    post(http, "/v1/subscriptions", subscription)
    post(http, "/v1/subscriptions/batch", [{"subscription_id": "s1", "company_id": "c1"}])
    post(http, "/v1/subscriptions/batch", [{**subscription, "status": "active"}])

    company = http.get("/api/companies/c1").json()
    assert without_store_fields(company) == {
        "company_id": "c1",
        "company_domain": "acme.com",
        "metadata": {"a": {"x": 1, "y": 2}},
    }
    assert collector.stats()["subscriptions"] == 1
    assert [s["status"] for s in collector.subscriptions(status="active")] == ["active"]
    assert collector.subscriptions(status="trialing") == []


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-02-06T04:45:42.914",
        "2024-02-06T04:45:42.914Z",
        "2024-02-06T04:45:42Z",
        "2024-02-06T05:45:42.914+01:00",
        "2024-02-06T04:45:42.914123456Z",
        "2016-08-16T09:21:56.998Z",
    ],
)
def test_timestamps_with_or_without_offset_and_old_ones_are_accepted(
    stamp: str, collector: LocalCollector, http: httpx.Client
) -> None:
    event = make_event()
    event["request"]["time"] = stamp
    event["response"]["time"] = stamp

    assert post(http, "/v1/events", event).status_code == 201

    assert collector.events()[0]["request"]["time"] == stamp


def test_unknown_fields_unicode_and_formatting_survive(
    collector: LocalCollector, http: httpx.Client
) -> None:
    event = make_event(
        metadata={"note": "naïve ☃ 日本 😀"},
        future_field={"x": [1, 2.5, None, True]},
        weight=3,
        blocked_by="rule-1",
    )
    # An unpaired surrogate can only travel as a JSON escape; it is kept as sent.
    escaped = make_event(metadata={"lone": "\udc80"})
    body = "[" + json.dumps(event, indent=4, ensure_ascii=False) + ",\n"
    body += json.dumps(escaped) + "]"

    response = http.post("/v1/events/batch", content=body.encode())

    assert response.status_code == 201, response.text
    stored = {e["transaction_id"]: without_store_fields(e) for e in collector.events()}
    assert stored == {e["transaction_id"]: e for e in (event, escaped)}


def test_write_responses_carry_the_config_etag(http: httpx.Client) -> None:
    etags = set()
    for path, payload in (
        ("/v1/events", make_event()),
        ("/v1/actions", {"action_name": "a", "request": {"uri": "/"}}),
        ("/v1/users", {"user_id": "u"}),
        ("/v1/companies", {"company_id": "c"}),
        ("/v1/subscriptions", {"subscription_id": "s", "company_id": "c", "status": "active"}),
    ):
        response = post(http, path, payload)
        assert response.status_code == 201, response.text
        etags.add(response.headers["X-Moesif-Config-ETag"])
    config = http.get("/v1/config")
    assert etags == {config.headers["X-Moesif-Config-ETag"]}


def test_data_survives_a_restart(tmp_path: Path) -> None:
    event: dict[str, Any] = make_event()
    with LocalCollector(tmp_path / "c.db") as first, httpx.Client(base_url=first.url) as client:
        client.headers["X-Moesif-Application-Id"] = "x"
        post(client, "/v1/events", event)
    with LocalCollector(tmp_path / "c.db") as second:
        assert [without_store_fields(e) for e in second.events()] == [event]
        assert second.stats()["events"] == 1
