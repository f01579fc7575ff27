from __future__ import annotations

import base64
import json
import re
import uuid

import pytest

from moesif_agent._capture import (
    header_dict,
    header_value,
    new_transaction_id,
    user_from_credentials,
    valid_transaction_id,
    wsgi_header_name,
)
from moesif_agent._exchange import HEADERS_ASGI, HEADERS_PAIRS, HEADERS_WSGI
from moesif_agent._forwarding import Forwarding
from moesif_agent._options import DEFAULT_TRUSTED_PROXIES

TRUSTED = Forwarding(DEFAULT_TRUSTED_PROXIES)


def test_transaction_ids_are_version_4_uuids() -> None:
    ids = {new_transaction_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in list(ids)[:50]:
        parsed = uuid.UUID(value)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert re.fullmatch(r"[0-9a-f-]{36}", value)


UUID = "3f2a9c4e-1b7d-4e8a-9c3b-2d1e0f4a5b6c"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (UUID, UUID),
        (UUID.upper(), UUID),
        ("abc-123", None),  # the Collector API wants a 36-character UUID
        ("{" + UUID + "}", None),
        ("", None),
        (None, None),
        ("x" * 200, None),
        ("a,b", None),
    ],
)
def test_incoming_transaction_ids_are_reused_only_when_uuids(
    value: str | None, expected: str | None
) -> None:
    assert valid_transaction_id(value) == expected


def test_header_names_in_their_usual_case() -> None:
    assert wsgi_header_name("HTTP_X_API_KEY") == "X-Api-Key"
    assert wsgi_header_name("CONTENT_TYPE") == "Content-Type"
    assert header_dict(HEADERS_ASGI, [(b"x-request-id", b"1"), (b"x-request-id", b"2")]) == {
        "X-Request-Id": "1, 2"
    }
    assert header_dict(HEADERS_PAIRS, [("Set-Cookie", "a=1"), ("set-cookie", "b=2")]) == {
        "Set-Cookie": "a=1, b=2"
    }


def test_header_value_in_each_style() -> None:
    assert header_value(HEADERS_WSGI, [("HTTP_X_USER", "u")], "x-user") == "u"
    assert header_value(HEADERS_WSGI, [("CONTENT_TYPE", "text/plain")], "content-type") == (
        "text/plain"
    )
    assert header_value(HEADERS_ASGI, [(b"x-user", b"u")], "x-user") == "u"
    assert header_value(HEADERS_PAIRS, [("X-User", "u")], "x-user") == "u"
    assert header_value(HEADERS_PAIRS, [], "x-user") is None


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("8.8.8.8", {"X-Forwarded-For": "1.1.1.1"}, "8.8.8.8"),  # untrusted peer: ignored
        ("127.0.0.1", {"X-Forwarded-For": "1.1.1.1"}, "1.1.1.1"),
        ("10.0.0.1", {"X-Forwarded-For": "6.6.6.6, 1.1.1.1, 10.0.0.2"}, "1.1.1.1"),
        ("10.0.0.1", {"X-Forwarded-For": "10.0.0.9"}, "10.0.0.9"),  # all hops private
        ("10.0.0.1", {"X-Forwarded-For": "garbage"}, "10.0.0.1"),
        ("10.0.0.1", {"X-Forwarded-For": "1.2.3.4, garbage, 10.0.0.7"}, "10.0.0.7"),
        ("10.0.0.1", {}, "10.0.0.1"),
        (None, {}, None),
        (None, {"X-Forwarded-For": "1.1.1.1"}, "1.1.1.1"),  # a unix socket: a local proxy
        # The proxy appends X-Forwarded-For: what else the client sent is not believed.
        ("127.0.0.1", {"X-Forwarded-For": "7.7.7.7", "Forwarded": "for=1.2.3.4"}, "7.7.7.7"),
        ("127.0.0.1", {"X-Real-Ip": "5.5.5.5"}, "127.0.0.1"),
        ("127.0.0.1", {"Forwarded": "for=1.2.3.4"}, "127.0.0.1"),
    ],
)
def test_client_ip(peer: str | None, headers: dict[str, str], expected: str | None) -> None:
    lower = {name.lower(): value for name, value in headers.items()}
    assert TRUSTED.client_ip(peer, lower) == expected


@pytest.mark.parametrize(
    ("header", "headers", "expected"),
    [
        ("forwarded", {"Forwarded": "for=192.0.2.60;proto=http;by=203.0.113.43"}, "192.0.2.60"),
        ("forwarded", {"Forwarded": 'for="[2001:db8:cafe::17]:4711"'}, "2001:db8:cafe::17"),
        ("forwarded", {"Forwarded": "for=unknown, for=198.51.100.17"}, "198.51.100.17"),
        ("forwarded", {"Forwarded": "for=1.1.1.1", "X-Forwarded-For": "9.9.9.9"}, "1.1.1.1"),
        ("x-real-ip", {"X-Real-Ip": "5.5.5.5", "X-Forwarded-For": "9.9.9.9"}, "5.5.5.5"),
        ("x-real-ip", {"X-Real-Ip": "not an address"}, "10.0.0.1"),
    ],
)
def test_client_ip_from_the_header_the_proxy_is_said_to_write(
    header: str, headers: dict[str, str], expected: str
) -> None:
    lower = {name.lower(): value for name, value in headers.items()}
    assert Forwarding(DEFAULT_TRUSTED_PROXIES, header).client_ip("10.0.0.1", lower) == expected


def jwt(payload: object) -> str:
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJub25lIn0.{encoded}.signature"


@pytest.mark.parametrize(
    ("value", "field", "expected"),
    [
        (f"Bearer {jwt({'sub': 'u1'})}", "sub", "u1"),
        (f"bearer {jwt({'sub': 123})}", "sub", "123"),
        (f"Bearer {jwt({'user': {'id': 'nested'}})}", "user.id", "nested"),
        (jwt({"sub": "bare"}), "sub", "bare"),
        (f"Basic {base64.b64encode(b'alice:secret').decode()}", "sub", "alice"),
        ("Bearer not-a-jwt", "sub", None),
        ("Bearer a.b.c", "sub", None),
        (f"Bearer {jwt(['list'])}", "sub", None),
        (f"Bearer {jwt({'sub': {'obj': 1}})}", "sub", None),
        ("Basic !!!", "sub", None),
        ("", "sub", None),
    ],
)
def test_user_from_credentials(value: str, field: str, expected: str | None) -> None:
    assert user_from_credentials(value, field) == expected


def test_an_ipv4_mapped_peer_is_trusted_as_its_ipv4_address() -> None:
    lower = {"x-forwarded-for": "198.51.100.7"}
    assert TRUSTED.client_ip("::ffff:127.0.0.1", lower) == "198.51.100.7"
    assert TRUSTED.client_ip("::ffff:203.0.113.9", lower) == "::ffff:203.0.113.9"
