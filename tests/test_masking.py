"""Masking: headers, bodies, query strings; defaults; the mask callback; nothing secret leaves."""

from __future__ import annotations

import base64
import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moesif_agent import Agent, Options
from moesif_agent._exchange import HEADERS_PAIRS, Body, Exchange
from moesif_agent._masking import MASK
from moesif_agent._wire import Dropped, WireEncoder


def encoder(**options: Any) -> WireEncoder:
    return WireEncoder(Options(application_id="app", **options))


def exchange(
    *,
    request_headers: dict[str, str] | None = None,
    response_headers: dict[str, str] | None = None,
    request_body: bytes = b"",
    response_body: bytes = b"",
    query: str = "",
    limit: int = 100_000,
) -> Exchange:
    ex = Exchange()
    ex.transaction_id = "t-1"
    ex.host = "api.example"
    ex.path = "/login"
    ex.query = query
    ex.request_header_style = HEADERS_PAIRS
    ex.request_headers = list((request_headers or {"Content-Type": "application/json"}).items())
    ex.status = 200
    ex.response_headers = list((response_headers or {"Content-Type": "application/json"}).items())
    for attr, data in (("request_body", request_body), ("response_body", response_body)):
        body = Body(limit)
        body.add(data)
        setattr(ex, attr, body)
    return ex


def wire(ex: Exchange, **options: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(encoder(**options).encode(ex))
    return result


def test_default_credential_headers_are_redacted_after_the_user_was_read() -> None:
    token = "eyJhbGciOiJub25lIn0." + base64.urlsafe_b64encode(b'{"sub":"u-9"}').decode().rstrip("=")
    event = wire(
        exchange(
            request_headers={
                "authorization": f"Bearer {token}.sig",
                "Proxy-Authorization": "Basic abc",
                "Cookie": "session=s3cr3t; theme=dark",
                "X-API-KEY": "k-123",
                "Accept": "*/*",
            },
            response_headers={"Set-Cookie": "session=new; Path=/; HttpOnly", "Vary": "Cookie"},
        )
    )
    assert event["user_id"] == "u-9"
    headers = event["request"]["headers"]
    assert headers["authorization"] == f"Bearer {MASK}"
    assert headers["Proxy-Authorization"] == f"Basic {MASK}"
    assert headers["Cookie"] == f"session={MASK}; theme={MASK}"
    assert headers["X-API-KEY"] == MASK
    assert headers["Accept"] == "*/*"
    response = event["response"]["headers"]
    assert response["Set-Cookie"] == f"session={MASK}; Path=/; HttpOnly"
    assert response["Vary"] == "Cookie"


def test_defaults_can_be_turned_off() -> None:
    event = wire(
        exchange(
            request_headers={"Authorization": "Bearer abc"},
            request_body=b'{"password": "p"}',
        ),
        default_masks=False,
    )
    assert event["request"]["headers"]["Authorization"] == "Bearer abc"
    assert event["request"]["body"] == {"password": "p"}


def test_user_header_masks_are_case_insensitive_and_keep_the_field() -> None:
    event = wire(
        exchange(
            request_headers={"X-Tenant-Secret": "t", "x-other": "o"},
            response_headers={"X-Internal-ID": "42"},
        ),
        request_header_masks=["x-tenant-SECRET"],
        response_header_masks=["X-Internal-Id"],
    )
    assert event["request"]["headers"] == {"X-Tenant-Secret": MASK, "x-other": "o"}
    assert event["response"]["headers"] == {"X-Internal-ID": MASK}


def test_body_masks_at_every_depth_and_inside_lists() -> None:
    body = {
        "email": "a@example.com",
        "profile": {"ssn": "123-45-6789", "address": {"street": "x", "home_phone": "555"}},
        "cards": [{"cardNumber": "4111", "cvv": "123", "label": "main"}, {"card-number": "5500"}],
        "items": [[{"db_password": "p"}]],
        "tokens": {"refresh_token": "r", "token_type": "bearer"},
    }
    event = wire(
        exchange(request_body=json.dumps(body).encode(), response_body=json.dumps(body).encode()),
        request_body_masks=["home_phone"],
        response_body_masks=["EMAIL"],
    )
    request, response = event["request"]["body"], event["response"]["body"]
    assert request["profile"]["ssn"] == MASK
    assert request["profile"]["address"] == {"street": "x", "home_phone": MASK}
    assert request["cards"] == [
        {"cardNumber": MASK, "cvv": MASK, "label": "main"},
        {"card-number": MASK},
    ]
    assert request["items"] == [[{"db_password": MASK}]]
    assert request["tokens"] == {"refresh_token": MASK, "token_type": "bearer"}
    assert request["email"] == "a@example.com"
    assert response["email"] == MASK
    assert response["profile"]["address"]["home_phone"] == "555"


def test_form_bodies_and_query_strings_are_masked() -> None:
    event = wire(
        exchange(
            request_headers={"Content-Type": "application/x-www-form-urlencoded"},
            request_body=b"username=al&password=hunter2&remember=1",
            query="q=shoes&api_key=k123&session=abc",
        ),
        uri_query_masks=["session"],
    )
    form = base64.b64decode(event["request"]["body"]).decode()
    assert "hunter2" not in form
    assert "username=al" in form
    assert event["request"]["uri"] == (
        "http://api.example/login?q=shoes&api_key=[REDACTED]&session=[REDACTED]"
    )


def test_non_json_text_bodies_are_masked_as_text() -> None:
    event = wire(
        exchange(request_headers={"Content-Type": "text/plain"}, request_body=b"password: x")
    )
    assert base64.b64decode(event["request"]["body"]) == b"password: [REDACTED]"


def test_truncated_bodies_are_scrubbed_not_sent_raw() -> None:
    body = json.dumps({"user": "u", "password": "hunter2", "pad": "x" * 500}).encode()
    event = wire(exchange(request_body=body, limit=100))
    text = base64.b64decode(event["request"]["body"])
    assert b"hunter2" not in text
    assert text.startswith(b'{"user": "u", "password": "[REDACTED]"')
    assert event["metadata"]["_moesif"]["request_body"]["truncated"] is True


def test_mask_callback_gets_the_complete_event_after_declarative_masks() -> None:
    seen: list[dict[str, Any]] = []

    def mask(event: dict[str, Any]) -> dict[str, Any]:
        seen.append(json.loads(json.dumps(event)))
        event["response"]["body"]["owner"] = "hidden"
        return event

    event = wire(
        exchange(
            request_body=b'{"password": "p"}',
            response_body=b'{"owner": "alice", "id": 1}',
        ),
        mask_event_model=mask,
    )
    assert seen[0]["request"]["body"] == {"password": MASK}  # declarative masks came first
    assert seen[0]["response"]["body"] == {"owner": "alice", "id": 1}
    assert event["response"]["body"] == {"owner": "hidden", "id": 1}


def test_a_raising_mask_callback_drops_the_event_is_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def mask(event: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("no such field")

    agent = Agent(dry_run=True, mask_event_model=mask, batch_max_time=0.05)
    try:
        for _ in range(3):
            agent.record(exchange(response_body=b'{"secret_plan": "x"}'))
        assert agent.flush(timeout=5)
        assert agent.dry_run_events == []
        assert agent.stats()["dropped"] == {"mask_error": 3}
        assert caplog.text.count("the mask_event_model callback raised KeyError") == 1
    finally:
        agent.shutdown()


def test_a_mask_callback_may_drop_an_event_or_return_garbage() -> None:
    with pytest.raises(Dropped) as none:
        encoder(mask_event_model=lambda event: None).encode(exchange())
    assert none.value.reason == "masked_out"
    with pytest.raises(Dropped) as garbage:
        encoder(mask_event_model=lambda event: "nope").encode(exchange())
    assert garbage.value.reason == "mask_error"


def test_dry_run_keeps_masked_events_for_the_users_own_tests() -> None:
    agent = Agent(dry_run=True, batch_max_time=0.05)
    try:
        agent.record(exchange(request_body=b'{"token": "t", "n": 1}'))
        assert agent.flush(timeout=5)
        (event,) = agent.dry_run_events
        assert event["request"]["body"] == {"token": MASK, "n": 1}
    finally:
        agent.shutdown()


# Property: no value of a masked key survives, wherever it is --------------------------------

SECRET_KEYS = [
    "password",
    "Password",
    "api_key",
    "apiKey",
    "API-KEY",
    "access_token",
    "cvv",
    "client_secret",
    "db_password",
    "cardNumber",
    "ssn",
    "x_auth_token",
]
plain_keys = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8).filter(
    lambda k: not any(w in k for w in ("pass", "secret", "token", "key", "pin", "pwd", "cv", "ssn"))
)
scalars = st.one_of(st.integers(), st.booleans(), st.none(), st.text(max_size=10))


@st.composite
def documents(draw: st.DrawFn) -> tuple[Any, list[str]]:
    """Random JSON with secret keys planted at random depths; returns (doc, planted values)."""
    planted: list[str] = []

    def secret() -> dict[str, Any]:
        value = f"SECRET{len(planted)}X{draw(st.integers(0, 10**6))}"
        planted.append(value)
        return {draw(st.sampled_from(SECRET_KEYS)): value}

    def node(depth: int) -> Any:
        kind = draw(st.integers(0, 3 if depth < 4 else 0))
        if kind == 0:
            return draw(scalars)
        if kind == 1:
            return [node(depth + 1) for _ in range(draw(st.integers(0, 3)))]
        obj = {draw(plain_keys): node(depth + 1) for _ in range(draw(st.integers(0, 3)))}
        if draw(st.booleans()):
            obj.update(secret())
        return obj

    doc = {"root": node(0)}
    doc.update(secret())
    return doc, planted


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.sampled_from([100_000, 64]))
def test_no_value_of_a_masked_key_survives(case: tuple[Any, list[str]], limit: int) -> None:
    doc, planted = case
    data = json.dumps(doc).encode()
    encoded = encoder().encode(exchange(request_body=data, response_body=data, limit=limit))
    event = json.loads(encoded)
    visible = encoded.decode()
    for part in ("request", "response"):
        if event[part].get("transfer_encoding") == "base64":
            visible += base64.b64decode(event[part]["body"]).decode("utf-8", "replace")
    for value in planted:
        assert value not in visible
    assert "SECRET" not in visible  # not even the start of a value cut by truncation


def test_json_in_a_query_value_and_semicolon_pairs_are_masked() -> None:
    query = "filter=%7B%22token%22%3A%22s3cr3t%22%2C%22n%22%3A1%7D&a=1;password=hunter2"
    uri = wire(exchange(query=query))["request"]["uri"]
    assert "s3cr3t" not in uri and "hunter2" not in uri
    assert "password=[REDACTED]" in uri and "a=1" in uri and "%22n%22" in uri


def test_credential_lines_in_a_text_body_are_masked() -> None:
    body = b"GET /x HTTP/1.1\nAuthorization: Bearer abc.def.ghi\nAccept: */*\n"
    event = wire(exchange(request_headers={"Content-Type": "text/plain"}, request_body=body))
    text = base64.b64decode(event["request"]["body"])
    assert b"abc.def.ghi" not in text and b"Accept: */*" in text
