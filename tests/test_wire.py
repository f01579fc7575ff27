"""Exchange -> wire event, field by field."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moesif_agent import Options
from moesif_agent._bodies import loads
from moesif_agent._exchange import HEADERS_ASGI, HEADERS_WSGI, Body, Exchange
from moesif_agent._textmask import MASK
from moesif_agent._wire import MAX_EVENT_BYTES, Dropped, WireEncoder, iso_time


def encoder(**options: Any) -> WireEncoder:
    return WireEncoder(Options(application_id="app", **options))


def body(data: bytes, limit: int = 100_000) -> Body:
    b = Body(limit)
    for i in range(0, len(data), 7):
        b.add(data[i : i + 7])
    return b


def known_exchange() -> Exchange:
    ex = Exchange()
    ex.transaction_id = "a3765025-46ec-45dd-bc83-b136c8d1d257"
    ex.request_time = 1707194742.914
    ex.response_time = 1707194742.9505
    ex.method = "POST"
    ex.scheme = "https"
    ex.host = "api.acmeinc.com"
    ex.path = "/items/12345/reviews/"
    ex.query = "lang=en"
    ex.remote_addr = "61.48.220.123"
    ex.request_header_style = HEADERS_WSGI
    ex.request_headers = [
        ("HTTP_HOST", "api.acmeinc.com"),
        ("CONTENT_TYPE", "application/json"),
        ("HTTP_ACCEPT", "*/*"),
        ("HTTP_X_FORWARDED_FOR", "1.2.3.4"),
    ]
    ex.request_body = body(b'{"items": [{"item_id": "hello", "liked": false}]}')
    ex.status = 201
    ex.response_headers = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Vary", "Accept-Encoding"),
        ("Vary", "Origin"),
    ]
    ex.response_body = body(b'{"id": 1}')
    ex.user_id = "12345"
    ex.company_id = "67890"
    ex.session_token = "sess"
    ex.metadata = {"datacenter": "westus"}
    ex.api_version = "1.1.0"
    ex.route = "/items/<int:id>/reviews/"
    return ex


def test_the_exact_wire_event_for_a_known_exchange() -> None:
    event = json.loads(encoder().encode(known_exchange()))
    assert event == {
        "request": {
            "time": "2024-02-06T04:45:42.914Z",
            "uri": "https://api.acmeinc.com/items/12345/reviews/?lang=en",
            "verb": "POST",
            "api_version": "1.1.0",
            "ip_address": "61.48.220.123",  # the peer is not a trusted proxy
            "headers": {
                "Host": "api.acmeinc.com",
                "Content-Type": "application/json",
                "Accept": "*/*",
                "X-Forwarded-For": "1.2.3.4",
            },
            "body": {"items": [{"item_id": "hello", "liked": False}]},
            "transfer_encoding": "json",
        },
        "response": {
            "time": "2024-02-06T04:45:42.950Z",
            "status": 201,
            "headers": {
                "Content-Type": "application/json; charset=utf-8",
                "Vary": "Accept-Encoding, Origin",
            },
            "body": {"id": 1},
            "transfer_encoding": "json",
        },
        "transaction_id": "a3765025-46ec-45dd-bc83-b136c8d1d257",
        "direction": "Incoming",
        "user_id": "12345",
        "company_id": "67890",
        "session_token": "sess",
        "metadata": {"datacenter": "westus", "route": "/items/<int:id>/reviews/"},
    }


def test_iso_time_has_milliseconds_and_z() -> None:
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(1707194742.9999) == "2024-02-06T04:45:42.999Z"


def test_fields_without_value_are_omitted() -> None:
    ex = Exchange()
    ex.transaction_id = "t"
    ex.host = "h"
    event = json.loads(encoder().encode(ex))
    assert event == {
        "request": {
            "time": "1970-01-01T00:00:00.000Z",
            "uri": "http://h/",
            "verb": "GET",
            "headers": {},
        },
        "transaction_id": "t",
        "direction": "Incoming",
    }


def test_a_trusted_proxy_supplies_client_ip_scheme_and_host() -> None:
    ex = known_exchange()
    ex.remote_addr = "10.0.0.5"
    ex.request_headers = [
        ("HTTP_X_FORWARDED_FOR", "spoofed, 2001:db8::1"),
        ("HTTP_X_FORWARDED_PROTO", "http, https"),  # the proxy's own value is the last one
        ("HTTP_X_FORWARDED_HOST", "public.example"),
        ("HTTP_FORWARDED", "for=6.6.6.6;proto=http;host=spoofed.example"),
    ]
    event = json.loads(encoder().encode(ex))
    assert event["request"]["ip_address"] == "2001:db8::1"
    assert event["request"]["uri"].startswith("https://public.example/items/")


def test_a_trusted_rfc_7239_proxy_supplies_client_ip_scheme_and_host() -> None:
    ex = known_exchange()
    ex.remote_addr = "10.0.0.5"
    ex.request_headers = [
        ("HTTP_FORWARDED", 'for="[2001:db8::1]:4711";proto=https;host=public.example'),
        ("HTTP_X_FORWARDED_FOR", "6.6.6.6"),
    ]
    event = json.loads(encoder(client_ip_header="forwarded").encode(ex))
    assert event["request"]["ip_address"] == "2001:db8::1"
    assert event["request"]["uri"].startswith("https://public.example/items/")


def test_non_json_text_bodies_are_base64() -> None:
    ex = known_exchange()
    ex.request_headers = [("CONTENT_TYPE", "text/plain")]
    ex.request_body = body("plain text, déjà".encode())
    event = json.loads(encoder().encode(ex))
    assert event["request"]["transfer_encoding"] == "base64"
    assert base64.b64decode(event["request"]["body"]) == "plain text, déjà".encode()


def test_binary_bodies_are_replaced_by_a_note_not_sent_raw() -> None:
    ex = known_exchange()
    ex.request_headers = [("CONTENT_TYPE", "application/octet-stream")]
    ex.request_body = body(bytes(range(256)))
    event = json.loads(encoder().encode(ex))
    assert "body" not in event["request"] and "transfer_encoding" not in event["request"]
    assert event["metadata"]["_moesif"]["request_body"] == {
        "omitted": "binary body not inspected",
        "size": 256,
    }


def test_invalid_json_with_json_content_type_is_base64() -> None:
    ex = known_exchange()
    ex.request_body = body(b'{"broken":')
    event = json.loads(encoder().encode(ex))
    assert event["request"]["transfer_encoding"] == "base64"
    assert base64.b64decode(event["request"]["body"]) == b'{"broken":'


def test_truncated_bodies_say_so_in_metadata() -> None:
    ex = known_exchange()
    data = json.dumps({"pad": "x" * 5000}).encode()
    ex.response_body = body(data, limit=1000)
    event = json.loads(encoder().encode(ex))
    assert event["response"]["transfer_encoding"] == "base64"
    assert base64.b64decode(event["response"]["body"]) == data[:1000]
    assert event["metadata"]["_moesif"] == {
        "response_body": {"truncated": True, "size": len(data), "captured": 1000}
    }


def test_gzip_bodies_are_decoded_for_the_event() -> None:
    ex = known_exchange()
    ex.response_header_style = HEADERS_ASGI
    ex.response_headers = [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
    ex.response_body = body(gzip.compress(b'{"zipped": true}'))
    event = json.loads(encoder().encode(ex))
    assert event["response"]["body"] == {"zipped": True}
    assert event["response"]["headers"]["Content-Encoding"] == "gzip"


def test_a_gzip_bomb_is_not_expanded_beyond_the_cap() -> None:
    ex = known_exchange()
    ex.response_header_style = HEADERS_ASGI
    ex.response_headers = [(b"content-encoding", b"gzip")]
    ex.response_body = body(gzip.compress(b"0" * 10_000_000))
    event = json.loads(encoder(max_body_size=10_000).encode(ex))
    assert event["response"]["transfer_encoding"] == "base64"
    assert event["metadata"]["_moesif"]["response_body"]["truncated"] is True


def test_an_event_over_one_megabyte_loses_its_bodies_not_itself() -> None:
    ex = known_exchange()
    big = json.dumps({"pad": "y" * 700_000}).encode()
    ex.request_body = body(big, limit=800_000)
    ex.response_body = body(big, limit=800_000)
    data = encoder(max_body_size=800_000).encode(ex)
    assert len(data) <= MAX_EVENT_BYTES
    event = json.loads(data)
    assert "body" not in event["request"]
    assert "body" not in event["response"]
    assert event["metadata"]["_moesif"]["request_body"] == {"omitted": "event over 1 MB"}


def test_user_from_authorization_header_when_no_callback_gave_one() -> None:
    payload = base64.urlsafe_b64encode(json.dumps({"sub": "user-42"}).encode()).rstrip(b"=")
    token = f"eyJhbGciOiJIUzI1NiJ9.{payload.decode()}.sig"
    ex = known_exchange()
    ex.user_id = None
    ex.request_headers = [("HTTP_AUTHORIZATION", f"Bearer {token}")]
    event = json.loads(encoder().encode(ex))
    assert event["user_id"] == "user-42"
    assert event["request"]["headers"]["Authorization"] == "Bearer [REDACTED]"


def test_mask_callback_sees_the_complete_event_and_may_drop_it() -> None:
    seen: list[dict[str, Any]] = []

    def mask(event: dict[str, Any]) -> dict[str, Any] | None:
        seen.append(event)
        event["response"]["body"]["id"] = "hidden"
        return event if event["request"]["verb"] == "POST" else None

    enc = encoder(mask_event_model=mask)
    event = json.loads(enc.encode(known_exchange()))
    assert event["response"]["body"] == {"id": "hidden"}
    assert seen[0]["response"]["body"] == {"id": "hidden"}
    ex = known_exchange()
    ex.method = "GET"
    with pytest.raises(Dropped) as dropped:
        enc.encode(ex)
    assert dropped.value.reason == "masked_out"


def test_a_reference_agent_mask_function_with_attribute_access_works_unchanged() -> None:
    # moesifwsgi/moesifasgi/moesifdjango pass an EventModel: fields are attributes.
    def mask_event(eventmodel: Any) -> Any:
        eventmodel.response.body = None
        eventmodel.request.headers["X-Internal"] = "hidden"
        if eventmodel.user_id is None:  # unset fields read as None, as on EventModel
            eventmodel.user_id = "anonymous"
        eventmodel.metadata = {"masked": True}
        return eventmodel

    ex = known_exchange()
    ex.user_id = None
    event = json.loads(encoder(mask_event_model=mask_event).encode(ex))
    assert "body" not in event["response"] and "transfer_encoding" not in event["response"]
    assert event["request"]["headers"]["X-Internal"] == "hidden"
    assert event["user_id"] == "anonymous"
    assert event["metadata"] == {"masked": True}
    assert event["request"]["verb"] == "POST"


def test_a_misspelt_field_in_the_mask_function_drops_the_event_and_says_which() -> None:
    def mask_event(eventmodel: Any) -> Any:
        eventmodel.reponse.body = None
        return eventmodel

    with pytest.raises(Dropped) as dropped:
        encoder(mask_event_model=mask_event).encode(known_exchange())
    assert dropped.value.reason == "mask_error"


def test_a_raising_mask_callback_drops_the_event() -> None:
    def mask(event: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("password")

    with pytest.raises(Dropped) as dropped:
        encoder(mask_event_model=mask).encode(known_exchange())
    assert dropped.value.reason == "mask_error"


_JSON_EDGE_CASES = [
    '{"a": 1}',
    '  {"a": 1}',
    '{"a": 1}  \n',
    '{"a": 1} x',
    '{"a": 1}{"b": 2}',
    "[1, 2] ]",
    "",
    "   ",
    '"just a string"',
    "NaN",
    "[Infinity, -Infinity]",
    "1e999",
    '{"a": "\\ud800"}',
    '{"a": 1,}',
    "[" * 100_000 + "]" * 100_000,
    '{"a": 1}\u00a0',  # not JSON whitespace
    "\ufeff{}",
]


@pytest.mark.parametrize("text", _JSON_EDGE_CASES, ids=range(len(_JSON_EDGE_CASES)))
def test_the_fast_json_parse_agrees_with_json_loads(text: str) -> None:
    _agrees_with_json_loads(text)


def _reject(constant: str) -> Any:
    raise ValueError(constant)


def _interoperable(value: Any) -> Any:
    """What every strict parser reads alike: no lone surrogate, integers within 64 bits."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")  # raises on a lone surrogate (a UnicodeError: a ValueError)
        elif isinstance(item, int) and not -(2**63) <= item < 2**64:
            raise ValueError("integer beyond 64 bits")
        elif isinstance(item, float) and item in (float("inf"), float("-inf")):
            raise ValueError("a number beyond the double range (1e999)")
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


def _agrees_with_json_loads(text: str) -> None:
    """The agent's parse is strict, interoperable JSON: json.loads without NaN, Infinity,
    lone surrogates or integers beyond 64 bits."""
    try:
        expected: Any = _interoperable(json.loads(text, parse_constant=_reject))
    except (ValueError, RecursionError) as exc:
        expected = type(exc)
    try:
        got: Any = loads(text)
    except (ValueError, RecursionError) as exc:
        got = type(exc)
    if isinstance(expected, type):
        assert isinstance(got, type) and issubclass(got, (ValueError, RecursionError))
    else:
        assert json.dumps(got) == json.dumps(expected)


def test_a_json_body_with_trailing_garbage_is_not_spliced_as_json() -> None:
    ex = known_exchange()
    ex.request_body = body(b'{"a": 1} trailing')
    event = json.loads(encoder().encode(ex))
    assert event["request"]["transfer_encoding"] == "base64"
    assert base64.b64decode(event["request"]["body"]) == b'{"a": 1} trailing'


@given(st.text(alphabet=' \t\n\r{}[]":,.-+01eEtrufalsnNIiy\\\u00e9', max_size=30))
def test_the_fast_json_parse_agrees_with_json_loads_on_any_text(text: str) -> None:
    _agrees_with_json_loads(text)


def test_trace_ids_of_w3c_and_sentry_are_recorded_for_correlation() -> None:
    ex = known_exchange()
    ex.request_headers = [
        ("HTTP_TRACEPARENT", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("HTTP_SENTRY_TRACE", "771a43a4192642f0b136d5159a501700-b0e6f15b45c36b12-1"),
    ]
    metadata = json.loads(encoder().encode(ex))["metadata"]
    assert metadata["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert metadata["sentry_trace_id"] == "771a43a4192642f0b136d5159a501700"


@pytest.mark.parametrize(
    "value",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # invalid: all zeros
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "garbage",
        "00-4bf92f35-00f067aa0ba902b7-01",
    ],
)
def test_a_malformed_traceparent_is_not_recorded(value: str) -> None:
    ex = known_exchange()
    ex.request_headers = [("HTTP_TRACEPARENT", value)]
    assert "trace_id" not in json.loads(encoder().encode(ex)).get("metadata", {})


def test_a_proxys_host_cannot_inject_a_path_nor_its_proto_a_scheme() -> None:
    ex = known_exchange()
    ex.remote_addr = "10.0.0.5"
    ex.request_headers = [
        ("HTTP_X_FORWARDED_HOST", "evil.example/admin?x=1#"),
        ("HTTP_X_FORWARDED_PROTO", "javascript"),
    ]
    uri = json.loads(encoder().encode(ex))["request"]["uri"]
    assert uri.startswith(f"{ex.scheme}://evil.example%2Fadmin%3Fx%3D1%23/items/")


_SECRET_WORDS = ("password", "db_password", "Api-Key", "user[token]", "pin")
_PLAIN_WORDS = ("id", "name", "note", "tags", "pinned", "owner")
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=5)
    | st.builds(str.__mul__, st.characters(), st.integers(60, 400)),  # long, cheap to draw
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_SECRET_WORDS + _PLAIN_WORDS), inner, max_size=4)
        | st.builds(json.dumps, st.dictionaries(st.sampled_from(_SECRET_WORDS), inner))
    ),
    max_leaves=12,
)


def _secret_values(value: Any, found: list[Any]) -> list[Any]:
    """The values under secret keys in ``value``, JSON inside strings included."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            value = json.loads(value)
        except ValueError:
            return found
    if isinstance(value, dict):
        for key, item in value.items():
            (found.append(item) if key in _SECRET_WORDS else _secret_values(item, found))
    elif isinstance(value, list):
        for item in value:
            _secret_values(item, found)
    return found


@given(
    st.dictionaries(st.sampled_from(_SECRET_WORDS + _PLAIN_WORDS), _json_values, max_size=6),
    st.booleans(),
)
def test_a_json_body_is_masked_or_sent_as_it_came(value: dict[str, Any], escaped: bool) -> None:
    """Sparse bodies (long values) are checked by walking their keys, dense ones by a scan of
    their text first: either way every secret is masked, and a body without one is sent
    byte for byte as it came (escapes and spacing included)."""
    text = json.dumps(value)
    if escaped:  # "\u0070assword" is "password" to every JSON parser
        text = text.replace('"password"', '"\\u0070assword"')
    ex = known_exchange()
    ex.request_body = body(text.encode())
    data = encoder().encode(ex)
    sent = json.loads(data)["request"]["body"]

    secrets = _secret_values(value, [])
    assert all(item == MASK for item in _secret_values(sent, []))
    if not secrets:
        assert text.encode() in data
    else:
        assert sent != value
