"""The adapter contract, written once and run on all six stacks (see stacks.py): plain WSGI,
Flask, plain ASGI, Starlette, Django under WSGI and Django under ASGI. One scenario per test,
so a failure names the scenario and the stack."""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections import Counter
from typing import Any

import pytest

pytest.importorskip("httpx")

from tests.integrations.stacks import (
    APP,
    CHUNKS,
    CLIENT,
    LOOPBACK,
    TRANSACTION_ID,
    Outcome,
    Seen,
    Served,
    Stack,
    item,
    request_path,
    stack_fixture,  # noqa: F401  (the fixture "stack")
)
from tests.recorder import Recorder

ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
PAYLOAD = b'{"name": "widget", "tags": ["a", "b"], "price": 9.5}'


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def only(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(events) == 1, events
    return events[0]


def route_of(event: dict[str, Any]) -> str | None:
    return event.get("metadata", {}).get("route")  # type: ignore[no-any-return]


def serve_with_rules(
    stack: Stack, recorder: Recorder, config: Any, rules: Any, **options: Any
) -> Served:
    """The wrapped app, once its agent has fetched this config and these rules."""
    recorder.serve_config(config, rules)
    served = stack.serve(**options)
    assert served.get("/items/warm-up").status == 200
    assert served.agent.flush(timeout=10)  # the worker fetches config and rules first
    APP.reset()
    return served


def without_transaction_id(seen: list[Seen]) -> list[Seen]:
    return [
        Seen(s.method, s.path, {k: v for k, v in s.headers.items() if k != TRANSACTION_ID}, s.body)
        for s in seen
    ]


# Wire fields ------------------------------------------------------------------------------------


def test_a_get_is_recorded_with_every_field(stack: Stack) -> None:
    served = stack.serve()
    got = served.get("/items/7?q=1", headers={"Accept": "application/json", "X-Trace": "abc"})
    assert (got.status, got.json()) == (200, item("7"))
    event = only(served.events("/items/7"))
    request, response = event["request"], event["response"]
    assert request["uri"] == "http://api.example/items/7?q=1"
    assert request["verb"] == "GET"
    assert request["ip_address"] == CLIENT
    headers = lower(request["headers"])
    assert (headers["host"], headers["accept"], headers["x-trace"]) == (
        "api.example",
        "application/json",
        "abc",
    )
    assert "body" not in request
    assert ISO_MS.fullmatch(request["time"]), request["time"]
    assert ISO_MS.fullmatch(response["time"]), response["time"]
    assert response["time"] >= request["time"]
    assert response["status"] == 200
    assert lower(response["headers"])["content-type"] == "application/json"
    assert (response["body"], response["transfer_encoding"]) == (item("7"), "json")
    assert event["direction"] == "Incoming"
    assert route_of(event) == stack.item_route


def test_a_json_post_is_recorded_with_json_bodies(stack: Stack) -> None:
    served = stack.serve()
    got = served.post_json("/items", PAYLOAD)
    assert (got.status, got.body) == (201, PAYLOAD)
    event = only(served.events("/items"))
    request, response = event["request"], event["response"]
    assert (request["verb"], request["uri"]) == ("POST", "http://api.example/items")
    assert lower(request["headers"])["content-type"] == "application/json"
    for part in (request, response):
        assert (part["body"], part["transfer_encoding"]) == (json.loads(PAYLOAD), "json")
    assert response["status"] == 201
    assert response["time"] >= request["time"]
    assert event["direction"] == "Incoming"
    assert route_of(event) == ("/items" if stack.item_route else None)


# Transaction id ---------------------------------------------------------------------------------


def test_a_generated_transaction_id_is_in_the_event_the_app_and_the_response(
    stack: Stack,
) -> None:
    served = stack.serve()
    got = served.get("/items/1")
    txid = got.header(TRANSACTION_ID)
    assert txid is not None and UUID4.fullmatch(txid), txid
    (seen,) = APP.calls("/items/1")
    assert seen.headers.get(TRANSACTION_ID) == txid
    event = only(served.events("/items/1"))
    assert event["transaction_id"] == txid


def test_an_incoming_transaction_id_from_loopback_is_reused(stack: Stack) -> None:
    given = str(uuid.uuid4())
    served = stack.serve()
    got = served.get("/items/1", headers={"X-Moesif-Transaction-Id": given}, client=LOOPBACK)
    assert got.header(TRANSACTION_ID) == given
    (seen,) = APP.calls("/items/1")
    assert seen.headers.get(TRANSACTION_ID) == given
    event = only(served.events("/items/1"))
    assert (event["transaction_id"], event["request"]["ip_address"]) == (given, LOOPBACK)


def test_an_incoming_transaction_id_from_an_untrusted_peer_is_replaced(stack: Stack) -> None:
    given = str(uuid.uuid4())
    served = stack.serve()
    got = served.get("/items/1", headers={"X-Moesif-Transaction-Id": given}, client=CLIENT)
    txid = got.header(TRANSACTION_ID)
    assert txid is not None and txid != given and UUID4.fullmatch(txid), txid
    (seen,) = APP.calls("/items/1")
    assert seen.headers.get(TRANSACTION_ID) == txid
    assert only(served.events("/items/1"))["transaction_id"] == txid


def test_disable_transaction_id_adds_no_header(stack: Stack) -> None:
    served = stack.serve(disable_transaction_id=True)
    got = served.get("/items/1")
    assert got.status == 200
    assert got.header(TRANSACTION_ID) is None
    (seen,) = APP.calls("/items/1")
    assert TRANSACTION_ID not in seen.headers
    event = only(served.events("/items/1"))
    assert UUID4.fullmatch(event["transaction_id"])


# Governance -------------------------------------------------------------------------------------

BLOCK_RULE = {
    "_id": "block-rule",
    "type": "regex",
    "block": True,
    "regex_config": [{"conditions": [{"path": "request.route", "value": "^/items/blocked$"}]}],
    "response": {
        "status": 429,
        "headers": {"X-Blocked-By": "block-rule"},
        "body": {"error": "blocked", "codes": [1, 2]},
    },
}
TAG_RULE = {
    "_id": "tag-rule",
    "type": "regex",
    "block": False,
    "regex_config": [{"conditions": [{"path": "request.route", "value": "^/items/tagged$"}]}],
    "response": {"headers": {"X-Governed": "tagged by rule"}},
}


def test_a_blocking_rule_answers_for_the_app(stack: Stack, recorder: Recorder) -> None:
    served = serve_with_rules(stack, recorder, {}, [BLOCK_RULE, TAG_RULE])
    got = served.get("/items/blocked")
    assert got.status == 429
    assert got.json() == {"error": "blocked", "codes": [1, 2]}
    assert got.header("x-blocked-by") == "block-rule"
    assert got.header("content-type") == "application/json"
    assert got.header(TRANSACTION_ID)
    assert APP.calls("/items/blocked") == []  # the app was never called
    assert served.get("/items/2").status == 200  # the rule blocks only what it matches
    assert len(APP.calls("/items/2")) == 1
    event = only(served.events("/items/blocked"))
    assert event["blocked_by"] == "block-rule"
    assert event["transaction_id"] == got.header(TRANSACTION_ID)
    assert event["response"]["status"] == 429
    assert event["response"]["body"] == {"error": "blocked", "codes": [1, 2]}
    assert "blocked_by" not in only(served.events("/items/2"))


def test_a_non_blocking_rule_adds_its_headers_to_the_real_response(
    stack: Stack, recorder: Recorder
) -> None:
    served = serve_with_rules(stack, recorder, {}, [BLOCK_RULE, TAG_RULE])
    got = served.get("/items/tagged")
    assert (got.status, got.json()) == (200, item("tagged"))
    assert got.header("x-governed") == "tagged by rule"
    assert len(APP.calls("/items/tagged")) == 1
    event = only(served.events("/items/tagged"))
    assert "blocked_by" not in event
    assert lower(event["response"]["headers"])["x-governed"] == "tagged by rule"
    assert event["response"]["body"] == item("tagged")


# Callbacks --------------------------------------------------------------------------------------


class Callbacks:
    """Callbacks for every stack (they take *args) that count their calls."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, name: str, result: Any) -> Any:
        def callback(*args: Any) -> Any:
            with self._lock:
                self.counts[name] += 1
            return result

        return callback


def test_callbacks_are_called_once_each_and_land_in_the_event(stack: Stack) -> None:
    calls = Callbacks()
    served = stack.serve(
        identify_user=calls("identify_user", "user-1"),
        identify_company=calls("identify_company", "company-1"),
        get_session_token=calls("get_session_token", "session-1"),
        get_metadata=calls("get_metadata", {"plan": "pro", "n": 1}),
        skip=calls("skip", False),
    )
    assert served.get("/items/1").status == 200
    event = only(served.events("/items/1"))
    assert calls.counts == {
        "identify_user": 1,
        "identify_company": 1,
        "get_session_token": 1,
        "get_metadata": 1,
        "skip": 1,
    }
    assert (event["user_id"], event["company_id"], event["session_token"]) == (
        "user-1",
        "company-1",
        "session-1",
    )
    assert (event["metadata"]["plan"], event["metadata"]["n"]) == ("pro", 1)
    assert route_of(event) == stack.item_route


USER_RULE = {
    "_id": "user-rule",
    "type": "user",
    "block": False,
    "response": {"headers": {"X-Plan": "{{0}}"}},
}
BLOCK_USER_RULE = {
    "_id": "block-user-rule",
    "type": "user",
    "block": True,
    "response": {"status": 402, "headers": {"X-Plan": "{{0}}"}, "body": {"error": "pay"}},
}


@pytest.mark.parametrize("blocking", [False, True], ids=["headers", "block"])
def test_identify_user_is_called_once_when_user_rules_need_the_user_first(
    stack: Stack, recorder: Recorder, blocking: bool
) -> None:
    rule = BLOCK_USER_RULE if blocking else USER_RULE
    config = {"user_rules": {"user-1": [{"rules": rule["_id"], "values": {"0": "gold"}}]}}
    calls = Callbacks()
    served = serve_with_rules(
        stack, recorder, config, [rule], identify_user=calls("identify_user", "user-1")
    )
    calls.counts.clear()
    got = served.get("/items/1")
    assert got.header("x-plan") == "gold"  # the rule knew the user before the app ran
    assert got.status == (402 if blocking else 200)
    assert len(APP.calls("/items/1")) == (0 if blocking else 1)
    event = only(served.events("/items/1"))
    assert calls.counts == {"identify_user": 1}
    assert event["user_id"] == "user-1"
    assert event.get("blocked_by") == (rule["_id"] if blocking else None)


# Skip rules -------------------------------------------------------------------------------------


def _skip_callback(*args: Any) -> bool:
    return request_path(*args) == "/items/skipped"


SKIPS: dict[str, tuple[dict[str, Any], str, str]] = {
    "skip_paths": ({"skip_paths": ["^/items/skipped$"]}, "GET", "/items/skipped"),
    "skip_methods": ({"skip_methods": ["POST"]}, "POST", "/items"),
    "skip_callback": ({"skip": _skip_callback}, "GET", "/items/skipped"),
    "probe_paths": ({"skip_probe_paths": True}, "GET", "/health"),
}


@pytest.mark.parametrize("rule", list(SKIPS))
def test_a_skipped_request_reaches_the_app_unchanged_and_is_not_recorded(
    stack: Stack, rule: str
) -> None:
    options, method, path = SKIPS[rule]
    headers = {"Accept": "application/json", "X-Trace": "abc"}
    body = PAYLOAD if method == "POST" else b""
    if body:
        headers["Content-Type"] = "application/json"
    expected = stack.bare().send(method, path, headers=headers, body=body)
    expected_seen = list(APP.seen)
    APP.reset()
    served = stack.serve(**options)
    got = served.send(method, path, headers=headers, body=body)
    assert served.get("/items/kept").status == 200
    seen = APP.calls(path)
    if rule == "skip_callback":  # asked once the response exists: the id is already given
        got, seen = got.without_transaction_id(), without_transaction_id(seen)
    assert got == expected
    assert seen == expected_seen
    assert served.events(path) == []
    assert len(served.events("/items/kept")) == 1  # the agent was recording


# Streaming --------------------------------------------------------------------------------------


def test_streamed_chunks_reach_the_client_as_the_app_produces_them(stack: Stack) -> None:
    served = stack.serve()
    APP.gate.clear()  # the app produces chunk 2 only once the test opens the gate
    with served.stream("/stream") as chunks:
        first = next(chunks)
        produced_then = list(APP.produced)
        APP.gate.set()
        rest = b"".join(chunks)
    assert (first, produced_then) == (CHUNKS[0], [1]), "the adapter held back the first chunk"
    assert first + rest == b"".join(CHUNKS)
    assert APP.produced == [1, 2, 3]
    event = only(served.events("/stream"))
    assert event["response"]["status"] == 200
    assert base64.b64decode(event["response"]["body"]) == b"".join(CHUNKS)


# Errors -----------------------------------------------------------------------------------------


def test_a_raising_handler_gives_the_client_what_it_gives_without_the_agent(
    stack: Stack,
) -> None:
    expected = stack.bare().get("/error")
    assert expected.status == 500 or expected.error  # the app really failed
    APP.reset()
    served = stack.serve()
    got = served.get("/error")
    assert got.without_transaction_id() == expected
    assert len(APP.calls("/error")) == 1
    event = only(served.events("/error"))
    assert event["response"]["status"] == 500


# The app cannot tell ----------------------------------------------------------------------------

REQUESTS: dict[str, tuple[str, str, bytes]] = {
    "item": ("GET", "/items/7?q=1", b""),
    "create": ("POST", "/items", PAYLOAD),
    "stream": ("GET", "/stream", b""),
    "health": ("GET", "/health", b""),
}


@pytest.mark.parametrize("route", list(REQUESTS))
def test_the_app_and_the_client_cannot_tell_the_agent_is_there(stack: Stack, route: str) -> None:
    method, target, body = REQUESTS[route]
    headers = {
        "Accept": "application/json",
        "Authorization": "Bearer not-for-the-agent-to-mask",
        "X-Trace": "abc",
    }
    if body:
        headers["Content-Type"] = "application/json"
    expected = stack.bare().send(method, target, headers=headers, body=body)
    assert expected.status in (200, 201)
    expected_seen = list(APP.seen)
    APP.reset()
    served = stack.serve()
    got: Outcome = served.send(method, target, headers=headers, body=body)
    assert got.header(TRANSACTION_ID)  # the one difference the client sees
    assert got.without_transaction_id() == expected
    assert without_transaction_id(APP.seen) == expected_seen
    only(served.events(target.split("?")[0]))  # and the agent did record it
