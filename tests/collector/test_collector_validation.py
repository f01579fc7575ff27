"""What the collector refuses, with which status and message, and that it keeps serving."""

from __future__ import annotations

import copy
import gzip
import json
import logging
import socket
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from moesif_agent.collector import LocalCollector
from tests.collector.helpers import make_event, post

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = event
        for key in parents:
            target = target[key]
        target[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = event
        for key in parents:
            target = target[key]
        del target[last]

    return mutate


EVENT_ERRORS: list[tuple[str, Mutation, str, str]] = [
    ("no request", _delete("request"), "request", "request is required"),
    ("request a string", _set("request", "GET /"), "request", "must be an object, not a string"),
    ("no request.time", _delete("request.time"), "request.time", "is required"),
    ("time a number", _set("request.time", 1707194742), "request.time", "not an integer"),
    ("time not ISO", _set("request.time", "yesterday"), "request.time", "not an ISO 8601"),
    ("no such date", _set("request.time", "2024-02-30T00:00:00Z"), "request.time", "ISO 8601"),
    ("no uri", _delete("request.uri"), "request.uri", "is required"),
    ("empty verb", _set("request.verb", ""), "request.verb", "is required"),
    ("verb a list", _set("request.verb", ["GET"]), "request.verb", "not an array"),
    ("no headers", _delete("request.headers"), "request.headers", "is required"),
    ("headers a list", _set("request.headers", []), "request.headers", "must be an object"),
    (
        "header value a number",
        _set("request.headers", {"Content-Length": 12}),
        "request.headers.Content-Length",
        "must be a string",
    ),
    ("ip a number", _set("request.ip_address", 10), "request.ip_address", "must be a string"),
    (
        "bad transfer_encoding",
        _set("request.transfer_encoding", "gzip"),
        "request.transfer_encoding",
        'must be "json" or "base64"',
    ),
    (
        "base64 body not base64",
        lambda e: e["request"].update(transfer_encoding="base64", body="%%%"),
        "request.body",
        "not valid base64",
    ),
    (
        "base64 body an object",
        lambda e: e["request"].update(transfer_encoding="base64", body={"a": 1}),
        "request.body",
        "must be a base64 string",
    ),
    ("response a list", _set("response", []), "response", "must be an object"),
    ("no response.time", _delete("response.time"), "response.time", "is required"),
    ("no status", _delete("response.status"), "response.status", "is required"),
    ("status a string", _set("response.status", "200"), "response.status", "not a string"),
    ("status a float", _set("response.status", 200.0), "response.status", "not a number"),
    ("status a bool", _set("response.status", True), "response.status", "not a boolean"),
    ("status too big", _set("response.status", 10**20), "response.status", "(0-999)"),
    ("no response headers", _delete("response.headers"), "response.headers", "is required"),
    ("direction", _set("direction", "Inbound"), "direction", '"Incoming" or "Outgoing"'),
    ("transaction_id a number", _set("transaction_id", 7), "transaction_id", "must be a string"),
    ("user_id a number", _set("user_id", 12345), "user_id", "must be a string"),
    ("company_id an object", _set("company_id", {}), "company_id", "must be a string"),
    ("lone surrogate id", _set("user_id", "\udc80"), "user_id", "unpaired UTF-16 surrogate"),
    ("metadata a string", _set("metadata", "x"), "metadata", "must be an object"),
    ("weight negative", _set("weight", -1), "weight", "non-negative integer"),
    ("weight a float", _set("weight", 2.0), "weight", "non-negative integer"),
    # Sums of weights must fit SQLite's 64-bit integers, over billions of events.
    ("weight over 2**31-1", _set("weight", 2**31), "weight", "at most 2147483647, not 2147483648"),
    ("weight over 2**63-1", _set("weight", 2**63), "weight", "at most 2147483647"),
    ("weight 10**30", _set("weight", 10**30), "weight", "not a 31-digit number"),
    ("session_token a bool", _set("session_token", False), "session_token", "must be a string"),
]


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [case[1:] for case in EVENT_ERRORS],
    ids=[case[0] for case in EVENT_ERRORS],
)
def test_event_field_errors_name_the_field(
    mutate: Mutation, field: str, message: str, shared_http: httpx.Client
) -> None:
    bad = make_event()
    mutate(bad)

    single = post(shared_http, "/v1/events", bad)
    batch = post(shared_http, "/v1/events/batch", [make_event(), make_event(), make_event(), bad])

    assert single.status_code == 400, single.text
    assert single.json()["field"] == field
    assert message in single.json()["error"]
    assert "index" not in single.json()
    assert batch.status_code == 400
    assert batch.json()["field"] == field
    assert batch.json()["index"] == 3
    assert batch.json()["error"].startswith("item 3: ")


def test_a_rejected_batch_stores_nothing(collector: LocalCollector, http: httpx.Client) -> None:
    good = make_event()
    response = post(http, "/v1/events/batch", [good, make_event(response={"status": 200})])

    assert response.status_code == 400
    assert response.json() == {
        "error": "item 1: response.time is required (an ISO 8601 date-time string)",
        "field": "response.time",
        "index": 1,
    }
    assert collector.stats()["events"] == 0


PROFILE_ERRORS: list[tuple[str, dict[str, Any], str, str]] = [
    ("/v1/actions", {"request": {"uri": "/"}}, "action_name", "is required"),
    ("/v1/actions", {"action_name": "a"}, "request", "is required"),
    ("/v1/actions", {"action_name": "a", "request": {}}, "request.uri", "is required"),
    (
        "/v1/actions",
        {"action_name": "a", "request": {"uri": "/", "time": "soon"}},
        "request.time",
        "not an ISO 8601",
    ),
    ("/v1/users", {"company_id": "c"}, "user_id", "is required"),
    ("/v1/users", {"user_id": 12345}, "user_id", "must be a string"),
    ("/v1/users", {"user_id": "u", "campaign": "google"}, "campaign", "must be an object"),
    (
        "/v1/users",
        {"user_id": "u", "campaign": {"utm_source": 1}},
        "campaign.utm_source",
        "must be a string",
    ),
    ("/v1/users", {"user_id": "u", "modified_time": "now"}, "modified_time", "ISO 8601"),
    ("/v1/users", {"user_id": "u", "metadata": [1]}, "metadata", "must be an object"),
    ("/v1/companies", {"company_domain": "a.com"}, "company_id", "is required"),
    ("/v1/companies", {"company_id": ""}, "company_id", "is required"),
    ("/v1/subscriptions", {"company_id": "c", "status": "active"}, "subscription_id", "required"),
    ("/v1/subscriptions", {"subscription_id": "s", "status": "active"}, "company_id", "required"),
    ("/v1/subscriptions", {"subscription_id": "s", "company_id": "c"}, "status", "required"),
    (
        "/v1/subscriptions",
        {"subscription_id": "s", "company_id": "c", "status": "gone"},
        "status",
        "must be one of active, cancelled",
    ),
    (
        "/v1/subscriptions",
        {"subscription_id": "s", "company_id": "c", "status": "active", "current_period_end": 5},
        "current_period_end",
        "ISO 8601",
    ),
]


@pytest.mark.parametrize(("path", "item", "field", "message"), PROFILE_ERRORS)
def test_action_and_profile_field_errors(
    path: str, item: dict[str, Any], field: str, message: str, shared_http: httpx.Client
) -> None:
    response = post(shared_http, path, item)

    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert message in response.json()["error"]


def test_subscription_status_is_optional_in_a_batch(shared_http: httpx.Client) -> None:
    # The spec's tables say status is required for one subscription, optional in a batch.
    item = {"subscription_id": "s-opt", "company_id": "c"}
    assert post(shared_http, "/v1/subscriptions/batch", [item]).status_code == 201
    assert post(shared_http, "/v1/subscriptions", item).status_code == 400


@pytest.mark.parametrize(
    ("path", "payload", "message"),
    [
        ("/v1/events", [make_event()], "takes one JSON object, not an array"),
        ("/v1/events/batch", make_event(), "takes a JSON array, not an object"),
        ("/v1/users/batch", "users", "takes a JSON array, not a string"),
        ("/v1/events/batch", [1], "an event must be a JSON object, not an integer"),
        ("/v1/actions/batch", [None], "an action must be a JSON object, not null"),
        ("/v1/companies/batch", [[]], "a company must be a JSON object, not an array"),
    ],
)
def test_wrong_document_shapes(
    path: str, payload: Any, message: str, shared_http: httpx.Client
) -> None:
    response = post(shared_http, path, payload)

    assert response.status_code == 400
    assert message in response.json()["error"]


def _big_event(size: int) -> dict[str, Any]:
    event = make_event()
    padding = size - len(json.dumps(event, separators=(",", ":")))
    event["metadata"] = {"pad": "x" * (padding - len(',"metadata":{"pad":""}'))}
    assert len(json.dumps(event, separators=(",", ":"))) == size
    return event


def test_event_size_limit_is_one_megabyte(shared_http: httpx.Client) -> None:
    limit = 1024 * 1024
    at_limit = _big_event(limit)
    over = _big_event(limit + 1)

    # Each item is measured as sent, here compact JSON.
    compact = (",", ":")
    ok = shared_http.post(
        "/v1/events/batch", content=json.dumps([make_event(), at_limit], separators=compact)
    )
    single = shared_http.post("/v1/events", content=json.dumps(over, separators=compact))
    batch = post(shared_http, "/v1/events/batch", [make_event(), over], compress=True)

    assert ok.status_code == 201, ok.text
    assert single.status_code == 413
    assert single.json()["error"] == (
        f"event is {limit + 1} bytes; the limit is {limit} bytes (1 MB); "
        "truncate large bodies or drop fields from it"
    )
    assert batch.status_code == 413
    assert batch.json()["index"] == 1


def test_batch_over_fifty_megabytes_is_refused(shared_http: httpx.Client) -> None:
    limit = 50 * 1024 * 1024
    response = shared_http.post("/v1/events/batch", content=b" " * (limit + 1))

    assert response.status_code == 413
    assert response.json()["error"] == (
        f"request body is {limit + 1} bytes; the limit is {limit} bytes (50 MB); "
        "send fewer items per request"
    )


def test_gzip_bomb_stops_at_the_limit(shared_http: httpx.Client) -> None:
    bomb = gzip.compress(b"[" + b" " * (60 * 1024 * 1024) + b"]", compresslevel=9)
    assert len(bomb) < 100_000

    response = shared_http.post(
        "/v1/events/batch", content=bomb, headers={"Content-Encoding": "gzip"}
    )

    assert response.status_code == 413
    assert "decompressed request body exceeds the limit of 52428800 bytes" in response.text


def test_action_batches_are_limited_to_twelve_megabytes(shared_http: httpx.Client) -> None:
    action = {"action_name": "a", "request": {"uri": "/"}, "metadata": {"pad": "x" * 500_000}}
    body = gzip.compress(json.dumps([action] * 26).encode())  # about 13 MB inflated

    response = shared_http.post(
        "/v1/actions/batch", content=body, headers={"Content-Encoding": "gzip"}
    )

    assert response.status_code == 413
    assert "limit of 12582912 bytes (12 MB)" in response.json()["error"]


BAD_BODIES: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("invalid JSON", b'[{"request": }]', {}, 400, "not valid JSON: Expecting value"),
    ("invalid JSON single", b"{", {}, 400, "not valid JSON"),
    ("missing comma", b"[{} {}]", {}, 400, "Expecting ',' delimiter"),
    ("trailing data", b"[] []", {}, 400, "Extra data"),
    ("empty body", b"", {}, 400, "request body is empty"),
    ("NaN", b'[{"weight": NaN}]', {}, 400, "NaN is not valid JSON"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, {}, 400, "nested too deeply"),
    ("non-UTF-8", b'[{"user_id": "\xff\xfe"}]', {}, 400, "not valid UTF-8 (byte 0xff at offset"),
    (
        "truncated gzip",
        gzip.compress(json.dumps([make_event()]).encode())[:-12],
        {"Content-Encoding": "gzip"},
        400,
        "gzip body is truncated",
    ),
    ("not gzip", b"[]", {"Content-Encoding": "gzip"}, 400, "not valid gzip data"),
    ("unknown coding", b"[]", {"Content-Encoding": "br"}, 415, "unsupported Content-Encoding"),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_bad_bodies_get_a_clear_4xx(
    body: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
    shared_collector: LocalCollector,
    shared_http: httpx.Client,
) -> None:
    response = shared_http.post("/v1/events/batch", content=body, headers=headers)

    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    # ... and the server goes on serving on the same connection.
    event = make_event()
    assert post(shared_http, "/v1/events", event).status_code == 201
    assert shared_collector.events(transaction_id=event["transaction_id"])


def test_deflate_bodies_are_accepted(shared_http: httpx.Client) -> None:
    body = zlib.compress(json.dumps([make_event()]).encode())
    response = shared_http.post(
        "/v1/events/batch", content=body, headers={"Content-Encoding": "deflate"}
    )
    assert response.status_code == 201, response.text


def test_a_client_that_disconnects_mid_body_does_not_hurt(
    shared_collector: LocalCollector, shared_http: httpx.Client
) -> None:
    address = urlsplit(shared_collector.url)
    with socket.create_connection((address.hostname, address.port)) as sock:
        sock.sendall(
            b"POST /v1/events/batch HTTP/1.1\r\nHost: x\r\nX-Moesif-Application-Id: a\r\n"
            b"Content-Length: 100000\r\n\r\n[{"
        )
    event = make_event()
    assert post(shared_http, "/v1/events", event).status_code == 201


def test_rejections_are_logged_with_detail_and_rate_limited(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="moesif_agent.collector"):
        post(http, "/v1/events/batch", [make_event(), make_event(), {}])
        for _ in range(30):
            http.post("/v1/events", content=b"{")

    messages = [r.getMessage() for r in caplog.records if r.name.startswith("moesif_agent")]
    assert "rejected POST /v1/events/batch from 127.0.0.1:" in messages[0]
    assert "python-httpx" in messages[0]
    assert "400 item 2: request is required" in messages[0]
    assert len(messages) == 20  # then quiet for the rest of the minute


def test_application_id_is_required(shared_http: httpx.Client) -> None:
    for path in ("/v1/events", "/v1/config", "/v1/rules"):
        for headers in ({}, {"X-Moesif-Application-Id": ""}):
            response = httpx.request(
                "POST" if path == "/v1/events" else "GET",
                str(shared_http.base_url.join(path)),
                content=json.dumps(make_event()),
                headers=headers,
            )
            assert response.status_code == 401
            assert "missing X-Moesif-Application-Id header" in response.json()["error"]


def test_only_configured_application_ids_are_accepted() -> None:
    with LocalCollector(app_ids=["app-1", "app-2"]) as collector:
        event = make_event()
        statuses = []
        for app_id in ("app-1", "app-2", "app-3", "APP-1"):
            response = httpx.post(
                collector.url + "/v1/events/batch",
                content=json.dumps([copy.deepcopy(event)]),
                headers={"X-Moesif-Application-Id": app_id},
            )
            statuses.append(response.status_code)
        assert statuses == [201, 201, 401, 401]
        wrong = httpx.get(collector.url + "/v1/config", headers={"X-Moesif-Application-Id": "x"})
        assert wrong.status_code == 401
        assert "not accepted by this collector" in wrong.json()["error"]
        assert collector.application_id == "app-1"


def test_unknown_paths_and_methods_answer_json(shared_http: httpx.Client) -> None:
    missing = shared_http.get("/v1/nothing")
    wrong_method = shared_http.get("/v1/events")

    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found: GET /v1/nothing"}
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"error": "Method Not Allowed: GET /v1/events"}
