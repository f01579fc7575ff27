"""Hostile and odd bodies: nothing we cannot prove clean leaves raw (DESIGN 4, privacy
principle), and no odd value makes a batch anything but strict JSON.

Every scenario runs a real request through the WSGI middleware (under werkzeug's
LintMiddleware) to the recording collector, and looks only at what arrived there. "No leak"
means the planted secret cannot be read from the batch in any form: as is, JSON-escaped,
percent-encoded, base64-decoded, or inflated from gzip/deflate inside a base64 body
(tests/hostile.py). Case numbers refer to the hostile-input issue.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

pytest.importorskip("werkzeug")

from tests.hostile import (
    KEEP,
    UNTRUSTED,
    Echo,
    Reply,
    Wrapped,
    _module_recorder,  # noqa: F401  (a fixture)
    assert_no_leak,
    assert_strict_batches,
    body_note,
    deflate_bytes,
    gzip_bytes,
    jwt,
    leaks,
    multipart,
    raw_deflate_bytes,
    recorder_fixture,  # noqa: F401  (the fixture "recorder": one server per module)
    wire_body,
)
from tests.recorder import Recorder

SECRET = "Sk-9f3b7c1e-pr1vate"
LATIN_SECRET = "Sk-9f3b7c1e-sécret"  # é: one byte in latin-1, two in UTF-8


def wrapped(recorder: Recorder, **options: Any) -> Wrapped:
    return Wrapped(recorder, **options)


def note_says(note: Any, word: str) -> bool:
    return isinstance(note, dict) and bool(note.get(word))


# The checker itself -----------------------------------------------------------------------------


def test_the_leak_checker_reads_a_secret_in_every_form() -> None:
    secret = LATIN_SECRET
    text = f'{{"password": "{secret}"}}'.encode()
    forms = {
        "plain": secret,
        "json-escaped": json.dumps(secret),
        "percent-encoded": quote_plus(secret),
        "percent-encoded-latin-1": quote_plus(secret, encoding="latin-1"),
        "base64": base64.b64encode(text).decode(),
        "base64-latin-1": base64.b64encode(text.decode().encode("latin-1")).decode(),
        "base64-gzip": base64.b64encode(gzip_bytes(text)).decode(),
        "base64-deflate-cut-short": base64.b64encode(raw_deflate_bytes(text * 50)[:40]).decode(),
        "base64url": base64.urlsafe_b64encode(text).decode().rstrip("="),
    }
    for name, form in forms.items():
        assert leaks(secret, {"request": {"body": form}}), name
    assert not leaks(secret, {"request": {"body": base64.b64encode(b"nothing here").decode()}})


# 1. Compressed bodies ----------------------------------------------------------------------------

COMPRESSORS = {"gzip": gzip_bytes, "deflate": deflate_bytes, "raw-deflate": raw_deflate_bytes}
ENCODING_HEADER = {"gzip": "gzip", "deflate": "deflate", "raw-deflate": "deflate"}


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_1_a_small_compressed_json_response_is_inflated_and_masked(
    recorder: Recorder, kind: str
) -> None:
    app = wrapped(recorder)
    plain = json.dumps({"password": SECRET, "note": KEEP}).encode()
    app.app.reply = Reply(
        headers=[("Content-Type", "application/json"), ("Content-Encoding", ENCODING_HEADER[kind])],
        body=COMPRESSORS[kind](plain),
    )
    assert app.call("GET", "/report").status == 200
    event = app.event()
    assert_no_leak([SECRET], event)
    body = wire_body(event["response"])
    if isinstance(body, bytes):  # sent as masked text rather than JSON: still readable
        body = json.loads(body)
    assert body["note"] == KEEP and body["password"] != SECRET


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_1_a_compressed_response_inflating_past_the_cap_is_never_sent_compressed(
    recorder: Recorder, kind: str
) -> None:
    app = wrapped(recorder)  # max_body_size: the default 100_000
    plain = json.dumps({"password": SECRET, "filler": "x" * 300_000, "note": KEEP}).encode()
    compressed = COMPRESSORS[kind](plain)
    assert len(compressed) < 2_000  # the captured bytes are complete; only inflating passes
    app.app.reply = Reply(
        headers=[("Content-Type", "application/json"), ("Content-Encoding", ENCODING_HEADER[kind])],
        body=compressed,
    )
    assert app.call("GET", "/report").status == 200
    event = app.event()
    assert_no_leak([SECRET], event)
    note = body_note(event, "response")
    body = wire_body(event["response"])
    if body is None:
        assert note_says(note, "omitted"), note
    else:
        assert isinstance(body, bytes) and body[:2] != b"\x1f\x8b" and body[:1] == b"{"
        assert note_says(note, "truncated"), note


def test_1_a_compressed_response_longer_than_the_cap_is_never_sent_compressed(
    recorder: Recorder,
) -> None:
    app = wrapped(recorder, max_body_size=1_000)
    filler = base64.b64encode(os.urandom(6_000)).decode()  # does not compress
    plain = json.dumps({"password": SECRET, "filler": filler}).encode()
    app.app.reply = Reply(
        headers=[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        body=gzip_bytes(plain),
    )
    assert app.call("GET", "/report").status == 200
    event = app.event()
    assert_no_leak([SECRET], event)
    note = body_note(event, "response")
    body = wire_body(event["response"])
    if body is None:
        assert note_says(note, "omitted"), note
    else:
        assert isinstance(body, bytes) and body[:2] != b"\x1f\x8b"
        assert note_says(note, "truncated"), note


@pytest.mark.parametrize(
    ("encoding", "payload"),
    [
        ("br", b'{"password": "' + SECRET.encode() + b'"}'),
        ("zstd", b'{"password": "' + SECRET.encode() + b'"}'),
        ("gzip", b'not gzip {"password": "' + SECRET.encode() + b'"}'),
        ("deflate", b'{"password": "' + SECRET.encode() + b'"}'),
        ("x-custom, gzip", gzip_bytes(b'{"password": "' + SECRET.encode() + b'"}')),
    ],
    ids=["br", "zstd", "garbage-gzip", "garbage-deflate", "stacked-encodings"],
)
def test_1_a_body_in_an_encoding_the_agent_cannot_inflate_is_replaced_by_a_note(
    recorder: Recorder, encoding: str, payload: bytes
) -> None:
    app = wrapped(recorder)
    app.app.reply = Reply(
        headers=[("Content-Type", "application/json"), ("Content-Encoding", encoding)],
        body=payload,
    )
    assert app.call("GET", "/report").status == 200
    event = app.event()
    assert_no_leak([SECRET], event)
    assert "body" not in event["response"]
    assert note_says(body_note(event, "response"), "omitted")


def test_1_a_gzip_compressed_request_body_is_inflated_and_masked(recorder: Recorder) -> None:
    app = wrapped(recorder)
    plain = json.dumps({"password": SECRET, "note": KEEP}).encode()
    app.app.reply = Reply(headers=[("Content-Type", "text/plain")], body=b"ok")
    app.post(gzip_bytes(plain), "application/json", headers={"Content-Encoding": "gzip"})
    event = app.event()
    assert_no_leak([SECRET], event)
    body = wire_body(event["request"])
    if isinstance(body, bytes):
        body = json.loads(body)
    assert body["note"] == KEEP


# 2. Bodies that are not strict JSON --------------------------------------------------------------

TEXT_BODIES: dict[str, tuple[str, bytes, list[str]]] = {
    "ndjson": (
        "application/x-ndjson",
        (
            f'{{"password": "{SECRET}", "note": "{KEEP}"}}\n'
            f'{{"access_token": "{SECRET}", "n": 2}}\n'
        ).encode(),
        [SECRET],
    ),
    "trailing-comma-json": (
        "application/json",
        f'{{"note": "{KEEP}", "client_secret": "{SECRET}",}}'.encode(),
        [SECRET],
    ),
    "multipart": (
        "multipart/form-data; boundary=hostile-boundary-7",
        multipart([("note", KEEP.encode()), ("password", SECRET.encode())]),
        [SECRET],
    ),
    "latin-1-json": (
        "application/json",
        f'{{"note": "{KEEP}", "password": "{LATIN_SECRET}"}}'.encode("latin-1"),
        [LATIN_SECRET],
    ),
    "latin-1-form-percent-encoded": (
        "application/x-www-form-urlencoded",
        f"note={KEEP}&password={LATIN_SECRET.replace('é', '%E9')}".encode(),
        [LATIN_SECRET],
    ),
    "latin-1-form-raw-bytes": (
        "application/x-www-form-urlencoded",
        f"note={KEEP}&password={LATIN_SECRET}".encode("latin-1"),
        [LATIN_SECRET],
    ),
    "form": (
        "application/x-www-form-urlencoded",
        f"note={KEEP}&db_password={SECRET}&cvv={SECRET}x".encode(),
        [SECRET],
    ),
    "json-ish-text-plain": (
        "text/plain",
        f'{{"note": "{KEEP}", "api_key": "{SECRET}", }}'.encode(),
        [SECRET],
    ),
    "truncated-json": (
        "application/json",
        (f'{{"note": "{KEEP}", "x_auth_token": "{SECRET}", "filler": "' + "y" * 200_000).encode(),
        [SECRET],
    ),
}


@pytest.mark.parametrize("name", list(TEXT_BODIES))
def test_2_a_body_that_is_not_strict_json_is_masked_as_text_and_sent_base64(
    recorder: Recorder, name: str
) -> None:
    content_type, payload, secrets = TEXT_BODIES[name]
    app = wrapped(recorder)
    got = app.post(payload, content_type)  # the app echoes it back under the same type
    assert got.status == 200 and got.body == payload  # the client gets it untouched
    event = app.event()
    assert_no_leak(secrets, event)
    for which in ("request", "response"):
        part = event[which]
        assert part.get("transfer_encoding") == "base64", (which, part.get("transfer_encoding"))
        assert KEEP.encode() in wire_body(part), f"the {which} body lost what was not secret"


BINARY_BODIES: dict[str, tuple[str, bytes]] = {
    "nul-bytes": (
        "application/octet-stream",
        b"\x00\x01\x02\xff\xfe" + f"password={SECRET}".encode() + b"\x00" + bytes(range(256)),
    ),
    "png": (
        "image/png",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
        + f'{{"password": "{SECRET}"}}'.encode()
        + bytes(range(256)),
    ),
    "unlabelled-binary": (
        "",
        bytes(range(256)) + f'{{"token": "{SECRET}"}}'.encode() + bytes(range(255, -1, -1)),
    ),
}


@pytest.mark.parametrize("name", list(BINARY_BODIES))
def test_2_a_binary_body_is_replaced_by_a_note_with_its_size(recorder: Recorder, name: str) -> None:
    content_type, payload = BINARY_BODIES[name]
    app = wrapped(recorder)
    headers = {"Content-Type": content_type} if content_type else {}
    got = app.call("POST", "/upload", headers=headers, body=payload)
    assert got.body == payload
    event = app.event()
    assert_no_leak([SECRET], event)
    for which in ("request", "response"):
        assert "body" not in event[which], which
        note = body_note(event, which)
        assert note_says(note, "omitted"), (which, note)
        assert note.get("size") == len(payload), (which, note)


def test_2_a_multipart_form_as_djangos_test_client_posts_it_is_masked(
    recorder: Recorder,
) -> None:
    django = pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            SECRET_KEY="moesif-agent-tests", USE_TZ=True, DATABASES={}, INSTALLED_APPS=[]
        )
    django.setup()
    from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

    payload = encode_multipart(
        BOUNDARY, {"username": KEEP, "password": SECRET, "user[password]": SECRET}
    )
    app = wrapped(recorder)
    app.post(payload, MULTIPART_CONTENT)
    event = app.event()
    assert_no_leak([SECRET], event)
    assert KEEP.encode() in wire_body(event["request"])


MULTIPART_ODD = {
    # Django's and werkzeug's parsers read all three parts as the field "password".
    "unquoted-name": (
        "multipart/form-data; boundary=b1",
        f"--b1\r\nContent-Disposition: form-data; name=password\r\n\r\n{SECRET}\r\n--b1--\r\n",
    ),
    "rfc5987-name": (
        "multipart/form-data; boundary=b1",
        f"--b1\r\nContent-Disposition: form-data; name*=UTF-8''password\r\n\r\n{SECRET}\r\n"
        "--b1--\r\n",
    ),
    "upper-case-header": (
        "multipart/form-data; boundary=b1",
        f'--b1\r\nCONTENT-DISPOSITION: FORM-DATA; NAME="password"\r\n\r\n{SECRET}\r\n--b1--\r\n',
    ),
    "quoted-boundary": (
        'multipart/form-data; boundary="b 1"',
        f'--b 1\r\nContent-Disposition: form-data; name="password"\r\n\r\n{SECRET}\r\n--b 1--\r\n',
    ),
    "lf-line-endings": (
        "multipart/form-data; boundary=b1",
        f'--b1\nContent-Disposition: form-data; name="password"\n\n{SECRET}\n--b1--\n',
    ),
    "no-boundary-parameter": (
        "multipart/form-data",
        f'--b1\r\nContent-Disposition: form-data; name="password"\r\n\r\n{SECRET}\r\n--b1--\r\n',
    ),
}


@pytest.mark.parametrize(
    "name",
    [name for name in MULTIPART_ODD],
)
def test_2_odd_but_parseable_multipart_still_loses_its_password(
    recorder: Recorder, name: str
) -> None:
    content_type, text = MULTIPART_ODD[name]
    app = wrapped(recorder)
    app.post(text.encode(), content_type)
    assert_no_leak([SECRET], app.event())


# 3. Credentials in custom headers, bracketed keys ------------------------------------------------


def test_3_a_custom_authorization_header_gives_the_user_and_is_masked(recorder: Recorder) -> None:
    token = jwt({"sub": "user-77", "scope": SECRET})
    app = wrapped(recorder, authorization_header_name=["X-Access-Jwt"])
    app.call("GET", "/me", headers={"X-Access-Jwt": token})
    event = app.event()
    assert event.get("user_id") == "user-77"
    assert_no_leak([token, token.split(".")[1], SECRET], event)
    headers = {k.lower(): v for k, v in event["request"]["headers"].items()}
    assert "x-access-jwt" in headers  # the header is there, its value is not


SECRET_HEADER_NAMES = ["X-Client-Secret", "X-Password", "X-Refresh-Token", "Api-Token"]


def test_3_headers_named_like_secret_keys_are_masked(recorder: Recorder) -> None:
    app = wrapped(recorder)
    app.app.reply = Reply(
        headers=[("Content-Type", "text/plain"), ("X-Session-Token", SECRET + "-response")],
        body=b"ok",
    )
    headers = {name: f"{SECRET}-{n}" for n, name in enumerate(SECRET_HEADER_NAMES)}
    app.call("GET", "/me", headers={**headers, "X-Request-Id": KEEP})
    event = app.event()
    assert_no_leak([SECRET], event)
    assert event["request"]["headers"]["X-Request-Id"] == KEEP


def test_3_bracketed_form_keys_are_masked_by_their_innermost_key(recorder: Recorder) -> None:
    app = wrapped(recorder)
    payload = (
        f"user[name]={KEEP}&user[password]={SECRET}&card[card_number]={SECRET}"
        f"&a[b][api_key]={SECRET}"
    ).encode()
    app.post(payload, "application/x-www-form-urlencoded")
    event = app.event()
    assert_no_leak([SECRET], event)
    assert KEEP.encode() in wire_body(event["request"])


def test_3_bracketed_query_keys_are_masked_by_their_innermost_key(recorder: Recorder) -> None:
    app = wrapped(recorder)
    app.call("GET", "/search", query=f"q={KEEP}&session[token]={SECRET}&u[0][password]={SECRET}")
    event = app.event()
    assert_no_leak([SECRET], event)
    assert f"q={KEEP}" in event["request"]["uri"]


# 4. JSON inside JSON strings ---------------------------------------------------------------------


def test_4_json_encoded_inside_a_json_string_is_masked_inside(recorder: Recorder) -> None:
    app = wrapped(recorder)
    inner = json.dumps({"token": SECRET, "note": KEEP})
    payload = json.dumps({"payload": inner, "list": [json.dumps([{"password": SECRET}])]})
    app.post(payload.encode(), "application/json")
    event = app.event()
    assert_no_leak([SECRET], event)
    for which in ("request", "response"):
        body = event[which]["body"]
        assert event[which]["transfer_encoding"] == "json"
        assert isinstance(body["payload"], str)  # still a string, holding masked JSON
        assert json.loads(body["payload"])["note"] == KEEP


def test_4_json_nested_too_deep_to_parse_still_loses_its_secrets(recorder: Recorder) -> None:
    app = wrapped(recorder)
    depth = 3_000
    payload = ('{"a": [' * depth) + f'{{"password": "{SECRET}"}}' + (" ]}" * depth)
    app.post(payload.encode(), "application/json")
    event = app.event()
    assert_no_leak([SECRET], event)


# NaN, Infinity and lone surrogates: the batch stays strict JSON ----------------------------------


def test_nan_and_infinity_from_flask_jsonify_keep_the_batch_strict(recorder: Recorder) -> None:
    flask = pytest.importorskip("flask")
    from moesif_agent.integrations.flask import Moesif

    app = flask.Flask(__name__)

    @app.get("/stats")
    def stats() -> Any:
        return flask.jsonify({"ratio": float("nan"), "max": float("inf"), "min": -float("inf")})

    agent = Moesif(app, {"application_id": "hostile", "base_uri": recorder.url}).agent
    response = app.test_client().get("/stats")
    assert b"NaN" in response.data  # Flask really sends it
    assert agent.flush(timeout=10)
    events = assert_strict_batches(recorder)
    assert [e["request"]["uri"] for e in events] == ["http://localhost/stats"]


def test_a_lone_surrogate_in_a_forged_jwt_sub_keeps_the_batch_strict(recorder: Recorder) -> None:
    app = wrapped(recorder)
    app.call("GET", "/me", headers={"Authorization": f"Bearer {jwt({'sub': chr(0xD800)})}"})
    assert app.agent.flush(timeout=10)
    (event,) = assert_strict_batches(recorder)
    assert event["request"]["uri"] == "http://api.example/me"


def test_a_lone_surrogate_in_a_json_body_keeps_the_batch_strict(recorder: Recorder) -> None:
    app = wrapped(recorder)
    app.post(b'{"name": "\\ud800", "pair": "\\ud83d\\ude00"}', "application/json")
    assert app.agent.flush(timeout=10)
    (event,) = assert_strict_batches(recorder)
    assert event["request"]["uri"] == "http://api.example/echo"


def test_nan_and_surrogates_from_callbacks_keep_the_batch_strict(recorder: Recorder) -> None:
    app = wrapped(
        recorder,
        get_metadata=lambda app, environ: {
            "ratio": float("nan"),
            "s": "\udc80",
            "m": [-float("inf")],
        },
        identify_user=lambda *args: "user-\ud800",
        get_session_token=lambda *args: "\udfff",
    )
    app.call("GET", "/me")
    assert app.agent.flush(timeout=10)
    (event,) = assert_strict_batches(recorder)
    assert event["request"]["uri"] == "http://api.example/me"
    assert event["user_id"].startswith("user-")


def test_a_lone_surrogate_deep_in_a_json_body_keeps_the_event(recorder: Recorder) -> None:
    app = wrapped(recorder)
    depth = 300  # well within what the JSON parser takes
    payload = ('{"a": [' * depth) + '{"name": "\\ud800"}' + ("]}" * depth)
    app.post(payload.encode(), "application/json")
    assert app.agent.flush(timeout=10)
    events = assert_strict_batches(recorder)
    assert [e["request"]["uri"] for e in events] == ["http://api.example/echo"]


@pytest.mark.parametrize("odd", ["nan-body", "surrogate-user"])
def test_one_odd_event_does_not_cost_the_five_beside_it(recorder: Recorder, odd: str) -> None:
    app = wrapped(recorder, batch_max_time=30.0)  # nothing leaves before the flush
    for n in range(5):
        app.call("GET", f"/fine/{n}")
    if odd == "nan-body":
        app.post(b'{"ratio": NaN, "n": [Infinity, -Infinity]}', "application/json")
    else:
        app.call("GET", "/odd", headers={"Authorization": f"Bearer {jwt({'sub': chr(0xDC00)})}"})
    assert app.agent.flush(timeout=10)
    assert len(recorder.batches()) == 1  # the six travelled together
    events = assert_strict_batches(recorder)
    assert len(events) == 6
    assert {e["request"]["uri"].rsplit("/", 1)[-1] for e in events} == {
        "0",
        "1",
        "2",
        "3",
        "4",
        "echo" if odd == "nan-body" else "odd",
    }


# 18. Scalar JSON bodies --------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"42", b'"text"', b"true", b"null", b" -1.5e3 "])
def test_18_a_scalar_json_body_is_sent_base64_never_as_json(
    recorder: Recorder, payload: bytes
) -> None:
    app = wrapped(recorder)
    app.post(payload, "application/json")
    event = app.event()
    for which in ("request", "response"):
        part = event[which]
        assert part.get("transfer_encoding") == "base64", (which, part)
        assert wire_body(part) == payload


def test_the_echo_app_sees_exactly_what_the_client_sent(recorder: Recorder) -> None:
    """The agent's masking is for the wire only: the app and the client see the secrets."""
    app = wrapped(recorder)
    payload = f'{{"password": "{SECRET}"}}'.encode()
    got = app.post(payload, "application/json", remote_addr=UNTRUSTED)
    assert got.body == payload
    assert isinstance(app.app, Echo)
    ((_, seen),) = app.app.seen
    assert seen == payload
    assert_no_leak([SECRET], app.event())


# Property: no planted secret reaches the wire, whatever the body looks like ----------------------

SECRET_KEYS = (
    "password",
    "Password",
    "PASSWORD",
    "db_password",
    "userPassword",
    "secret",
    "client_secret",
    "clientSecret",
    "token",
    "access_token",
    "accessToken",
    "x_auth_token",
    "X-Auth-Token",
    "api_key",
    "apiKey",
    "API-KEY",
    "apikey",
    "card_number",
    "cardNumber",
    "cvv",
    "CVV",
    "ssn",
)
INNOCENT_KEYS = ("name", "note", "id", "kind", "items")
SECRET_TAILS = ("", "é", " +/&=%", "\\u0041", "~!*'()")


@dataclass
class Planted:
    """Fields to place in a body or a query string, and the secrets among their values."""

    fields: list[tuple[str, str]]
    secrets: list[str]


def _secret(n: int, tail: str) -> str:
    return f"Zq{n:08x}{tail}"


SECRETS = st.builds(_secret, st.integers(0, 2**32 - 1), st.sampled_from(SECRET_TAILS))
SECRET_FIELD = st.tuples(st.sampled_from(SECRET_KEYS), SECRETS, st.just(True))
INNOCENT_FIELD = st.tuples(st.sampled_from(INNOCENT_KEYS), st.just(KEEP), st.just(False))


def _planted(fields: list[tuple[str, str, bool]]) -> Planted:
    return Planted([(k, v) for k, v, _ in fields], [v for _, v, secret in fields if secret])


PLANTED = st.builds(
    _planted, st.lists(st.one_of(SECRET_FIELD, INNOCENT_FIELD), min_size=1, max_size=4)
)
WRAPS = st.lists(st.sampled_from(["object", "list"]), max_size=12)


def _nested(fields: list[tuple[str, str]], wraps: list[str]) -> Any:
    """The fields as a JSON object wrapped ``len(wraps)`` levels deep in objects and lists."""
    value: Any = dict(fields)
    for n, wrap in enumerate(wraps):
        value = {"items": value, "n": n} if wrap == "object" else [n, value, None]
    return value


BODY_KINDS = (
    "json",
    "json-ascii",
    "json-in-string",
    "json-trailing-comma",
    "ndjson",
    "form",
    "form-brackets",
    "multipart",
    "text-key-values",
    "text-jsonish",
    "latin-1-json",
    "jsonish-escaped-keys",
    "form-escaped-keys",
)


def _escaped(key: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in key)


@st.composite
def body(draw: Any) -> tuple[str, bytes, dict[str, str], list[str]]:
    """(content type, bytes, extra headers, planted secrets)."""
    plant = draw(PLANTED)
    kind = draw(st.sampled_from(BODY_KINDS))
    fields = plant.fields
    doc = _nested(fields, draw(WRAPS))
    if kind == "json":
        content_type, text = "application/json", json.dumps(doc, ensure_ascii=False)
    elif kind == "json-ascii":
        content_type, text = "application/json; charset=utf-8", json.dumps(doc)
    elif kind == "json-in-string":
        content_type, text = "application/json", json.dumps({"payload": json.dumps(doc)})
    elif kind == "json-trailing-comma":
        content_type, text = "application/json", json.dumps(dict(fields))[:-1] + ",}"
    elif kind == "ndjson":
        content_type = "application/x-ndjson"
        text = "".join(json.dumps({k: v}) + "\n" for k, v in fields)
    elif kind == "form":
        content_type, text = "application/x-www-form-urlencoded", urlencode(fields)
    elif kind == "form-brackets":
        content_type = "application/x-www-form-urlencoded"
        text = urlencode([(f"user[{k}]", v) for k, v in fields])
    elif kind == "multipart":
        boundary = draw(st.sampled_from(["hostile-boundary-7", "----WebKitFormBoundary7MA4YWx"]))
        content_type = f"multipart/form-data; boundary={boundary}"
        data = multipart([(k, v.encode()) for k, v in fields], boundary)
        return content_type, data, {}, plant.secrets
    elif kind == "text-key-values":
        content_type = "text/plain"
        text = "\n".join(f"{k}: {v}" for k, v in fields)
    elif kind == "jsonish-escaped-keys":
        content_type = "application/json"
        text = "{" + "".join(f'"{_escaped(k)}": {json.dumps(v)}, ' for k, v in fields) + "}"
    elif kind == "form-escaped-keys":
        content_type = "application/x-www-form-urlencoded"
        text = "&".join(
            "".join(f"%{b:02X}" for b in k.encode()) + "=" + quote_plus(v) for k, v in fields
        )
    elif kind == "text-jsonish":
        content_type, text = "text/plain", json.dumps(dict(fields))[:-1] + ", }"
    else:  # latin-1-json
        content_type, text = "application/json", json.dumps(doc, ensure_ascii=False)
        data = text.encode("latin-1", "replace")
        secrets = [
            s for s in plant.secrets if s.encode("latin-1", "replace").decode("latin-1") == s
        ]
        return content_type, data, {}, secrets
    data = text.encode()
    compression = draw(st.sampled_from(["", "", "gzip", "deflate"]))
    headers = {}
    if compression:
        data = (gzip_bytes if compression == "gzip" else deflate_bytes)(data)
        headers["Content-Encoding"] = compression
    return content_type, data, headers, plant.secrets


@st.composite
def request_headers(draw: Any) -> tuple[dict[str, str], list[str]]:
    headers: dict[str, str] = {}
    secrets: list[str] = []
    for name in draw(
        st.lists(
            st.sampled_from(
                [
                    "Authorization",
                    "Proxy-Authorization",
                    "Cookie",
                    "X-Api-Key",
                    "X-Auth-Token",
                    "X-Access-Jwt",
                ]
            ),
            unique=True,
            max_size=3,
        )
    ):
        secret = draw(SECRETS).replace("é", "e")
        secrets.append(secret)
        if name == "Authorization":
            scheme = draw(st.sampled_from(["bearer", "basic"]))
            if scheme == "basic":
                value = "Basic " + base64.b64encode(f"user-1:{secret}".encode()).decode()
            else:
                value = f"Bearer {secret}"
        elif name == "Cookie":
            value = f"theme=dark; session={secret}"
        else:
            value = secret
        headers[name] = value
    return headers, secrets


@st.composite
def query(draw: Any) -> tuple[str, list[str]]:
    plant = draw(PLANTED)
    bracketed = draw(st.booleans())
    pairs = [(f"filter[{k}]" if bracketed else k, v) for k, v in plant.fields]
    return urlencode(pairs), plant.secrets


@pytest.fixture
def property_app(request: pytest.FixtureRequest) -> Wrapped:
    """One dry-run app for all of a test's examples (the agent is shut down after the test
    by conftest)."""
    return Wrapped(
        None,
        max_body_size=request.param,
        authorization_header_name=["Authorization", "X-Access-Jwt"],
    )


@pytest.mark.parametrize("property_app", [100_000, 300], indirect=True, ids=["cap-100k", "cap-300"])
@hypothesis_settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: it costs seconds
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    request=body(),
    response=body(),
    headers=request_headers(),
    query=query(),
)
def test_property_no_planted_secret_reaches_the_wire(
    property_app: Wrapped,
    request: tuple[str, bytes, dict[str, str], list[str]],
    response: tuple[str, bytes, dict[str, str], list[str]],
    headers: tuple[dict[str, str], list[str]],
    query: tuple[str, list[str]],
) -> None:
    app = property_app
    request_type, request_body, request_extra, request_secrets = request
    response_type, response_body, response_extra, response_secrets = response
    app.app.reply = Reply(
        headers=[
            ("Content-Type", response_type),
            ("Set-Cookie", f"session={response_secrets[0] if response_secrets else 'x'}"),
            *response_extra.items(),
        ],
        body=response_body,
    )
    sent_headers = {"Content-Type": request_type, **request_extra, **headers[0]}
    before = len(app.agent.dry_run_events)
    got = app.call("POST", "/submit", query=query[0], headers=sent_headers, body=request_body)
    assert got.body == response_body
    assert app.agent.flush(timeout=10)
    events = app.agent.dry_run_events[before:]
    assert len(events) == 1
    assert_no_leak([*request_secrets, *response_secrets, *headers[1], *query[1]], events)
