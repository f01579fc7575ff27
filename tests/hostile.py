"""Shared by the hostile-input suites (test_hostile_*.py): what a leak is, what strict JSON is,
a small WSGI app under the agent, and a guard against requests that stall.

The suites test from the outside: what reaches the collector (the recorder, or the dry-run
sink), what the client gets and what the app sees. Nothing here reaches into the agent.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import json
import re
import signal
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, unquote_plus

import pytest

from tests.recorder import Answer, Recorder

UNTRUSTED = "203.0.113.9"  # not loopback, not a private network
LOOPBACK = "127.0.0.1"
KEEP = "keep-me-42"  # an innocent value next to the secrets: masking must not remove it


# Leaks -------------------------------------------------------------------------------------------

_JSON_ESCAPE = re.compile(r'\\u([0-9a-fA-F]{4})|\\(["\\/bfnrt])')
_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_BASE64 = re.compile(r"[A-Za-z0-9+/=_-]{8,}")


def _unescape_json(text: str) -> str:
    """JSON string escapes (``\\u00e9``, ``\\/``, ``\\"``) spelled out, pairs joined."""
    if "\\" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return chr(int(match.group(1), 16))
        char = match.group(2)
        return _SIMPLE_ESCAPES.get(char, char)

    unescaped = _JSON_ESCAPE.sub(one, text)
    return unescaped.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def inflate_all(data: bytes) -> list[bytes]:
    """Whatever gzip, zlib or raw deflate can make of ``data``, as far as it goes (a stream cut
    short still gives its beginning)."""
    found = []
    for wbits in (47, -15):
        inflater = zlib.decompressobj(wbits)
        out = []
        for start in range(0, len(data), 64):
            try:
                out.append(inflater.decompress(data[start : start + 64]))
            except zlib.error:
                break
        if out and any(out):
            found.append(b"".join(out))
    return found


def _text_forms(text: str) -> set[str]:
    forms = {text, _unescape_json(text)}
    for form in list(forms):
        forms.add(unquote(form))
        forms.add(unquote_plus(form))
        forms.add(unquote_plus(form, encoding="latin-1"))
    return forms


def _byte_forms(data: bytes, depth: int = 0) -> set[str]:
    forms: set[str] = set()
    for candidate in [data, *inflate_all(data)]:
        for codec in ("utf-8", "latin-1"):
            forms |= _text_forms(candidate.decode(codec, "replace"))
        if depth < 1:
            for text in [candidate.decode("latin-1")]:
                forms |= _base64_forms(text, depth + 1)
    return forms


def _base64_forms(text: str, depth: int = 0) -> set[str]:
    forms: set[str] = set()
    for match in _BASE64.finditer(text):
        token = match.group(0)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                data = decode(token + "=" * (-len(token) % 4))
            except (binascii.Error, ValueError):
                continue
            forms |= _byte_forms(data, depth)
    return forms


def strings(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON document, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def wire_forms(events: Any) -> set[str]:
    """Every form in which text can travel inside ``events``: as is, JSON-unescaped,
    percent-decoded (UTF-8 or latin-1), and base64-decoded then inflated (gzip, zlib, raw
    deflate) then decoded again."""
    forms: set[str] = set()
    for text in strings(events):
        forms |= _text_forms(text)
        forms |= _base64_forms(text)
    return forms


def leaks(secret: str, events: Any) -> list[str]:
    """The forms of ``events`` in which ``secret`` can still be read (empty: no leak)."""
    return [form[:200] for form in wire_forms(events) if secret in form]


def assert_no_leak(secrets: Iterable[str], events: Any) -> None:
    forms = wire_forms(events)
    for secret in secrets:
        found = [form[:300] for form in forms if secret in form]
        assert not found, f"secret {secret!r} reached the wire: {found[:3]}"


# Strict JSON -------------------------------------------------------------------------------------


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_loads(data: bytes) -> Any:
    """Parse as a strict JSON parser would (no NaN/Infinity, UTF-8 without lone surrogates)."""
    document = json.loads(data, parse_constant=_no_constants)
    for text in strings(document):
        text.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError
    return document


def batch_bytes(received: Any) -> bytes:
    data: bytes = received.raw
    if received.headers.get("content-encoding") == "gzip":
        data = gzip.decompress(data)
    return data


def assert_strict_batches(recorder: Recorder) -> list[dict[str, Any]]:
    """Every batch the recorder got is strict JSON; returns their events."""
    events: list[dict[str, Any]] = []
    for received in recorder.batches():
        data = batch_bytes(received)
        try:
            events += strict_loads(data)
        except (ValueError, UnicodeEncodeError) as exc:
            raise AssertionError(f"a batch is not strict JSON ({exc}): {data[:300]!r}") from exc
    return events


# Bodies on the wire ------------------------------------------------------------------------------


def wire_body(part: dict[str, Any]) -> Any:
    """A request/response body as the collector would read it: the JSON value, or the bytes
    of a base64 body, or None when there is none."""
    if "body" not in part:
        return None
    if part.get("transfer_encoding") == "base64":
        return base64.b64decode(part["body"])
    return part["body"]


def body_note(event: dict[str, Any], which: str) -> Any:
    return event.get("metadata", {}).get("_moesif", {}).get(f"{which}_body")


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def deflate_bytes(data: bytes) -> bytes:
    return zlib.compress(data)


def raw_deflate_bytes(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


def multipart(fields: list[tuple[str, bytes]], boundary: str = "hostile-boundary-7") -> bytes:
    lines = []
    for name, value in fields:
        lines.append(f"--{boundary}\r\n".encode())
        lines.append(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        lines.append(value + b"\r\n")
    lines.append(f"--{boundary}--\r\n".encode())
    return b"".join(lines)


def jwt(claims: dict[str, Any]) -> str:
    def segment(value: Any) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{segment({'alg': 'HS256', 'typ': 'JWT'})}.{segment(claims)}.c2lnbmF0dXJl"


# A small WSGI app under the agent ----------------------------------------------------------------


@dataclass
class Reply:
    status: str = "200 OK"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass
class Answered:
    status: int
    headers: dict[str, str]
    body: bytes


class Echo:
    """A WSGI app that reads the whole request body and answers with ``reply`` (by default
    the request body, under the request's Content-Type and Content-Encoding)."""

    def __init__(self) -> None:
        self.reply: Reply | None = None
        self.seen: list[tuple[dict[str, Any], bytes]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        self.seen.append((dict(environ), body))
        reply = self.reply
        if reply is None:
            headers = [("Content-Type", environ.get("CONTENT_TYPE") or "text/plain")]
            if environ.get("HTTP_CONTENT_ENCODING"):
                headers.append(("Content-Encoding", environ["HTTP_CONTENT_ENCODING"]))
            reply = Reply("200 OK", headers, body)
        headers = [*reply.headers, ("Content-Length", str(len(reply.body)))]
        start_response(reply.status, headers)
        return [reply.body]


def call_wsgi(
    app: Any,
    method: str = "GET",
    path: str = "/",
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    remote_addr: str | None = UNTRUSTED,
) -> Answered:
    """One request through a WSGI app as a PEP 3333 server makes it (the path's UTF-8 bytes
    as latin-1 characters); ``remote_addr`` None leaves REMOTE_ADDR out (a unix socket)."""
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(
        path=path,
        base_url="http://api.example",
        method=method,
        query_string=query or None,
        headers=headers or {},
        data=body,
    )
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    if remote_addr is None:
        environ.pop("REMOTE_ADDR", None)
    else:
        environ["REMOTE_ADDR"] = remote_addr
    got: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None):
        got["status"] = int(status[:3])
        got["headers"] = {k.lower(): v for k, v in response_headers}
        return lambda data: None

    result = app(environ, start_response)
    try:
        data = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return Answered(got["status"], got["headers"], data)


class Wrapped:
    """``Echo`` (or another WSGI app) under the WSGI middleware, both under werkzeug's
    LintMiddleware, delivering to ``recorder`` (None: a dry run, events kept in memory)."""

    def __init__(self, recorder: Recorder | None, app: Any = None, **options: Any) -> None:
        from werkzeug.middleware.lint import LintMiddleware

        from moesif_agent.integrations.wsgi import MoesifWSGIMiddleware

        self.recorder = recorder
        self.app = app if app is not None else Echo()
        options = {"application_id": "hostile", "batch_max_time": 0.05, **options}
        if recorder is None:
            options["dry_run"] = True
        else:
            recorder.server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
            options["base_uri"] = recorder.url
        middleware = MoesifWSGIMiddleware(LintMiddleware(self.app), options)
        self.agent = middleware.agent
        self.wsgi = LintMiddleware(middleware)

    def call(self, method: str = "GET", path: str = "/", **kwargs: Any) -> Answered:
        return call_wsgi(self.wsgi, method, path, **kwargs)

    def post(self, body: bytes, content_type: str, **kwargs: Any) -> Answered:
        headers = {"Content-Type": content_type, **kwargs.pop("headers", {})}
        return self.call("POST", "/echo", headers=headers, body=body, **kwargs)

    def events(self) -> list[dict[str, Any]]:
        assert self.agent.flush(timeout=10)
        if self.recorder is None:
            return self.agent.dry_run_events
        return self.recorder.events()

    def event(self) -> dict[str, Any]:
        events = self.events()
        assert len(events) == 1, events
        return events[0]


# Requests that stall -----------------------------------------------------------------------------


class Stalled(BaseException):
    """Raised into the main thread when a request overruns its budget (a BaseException, so
    the agent's fail-open guards cannot swallow it)."""


@contextlib.contextmanager
def no_stall(budget: float) -> Iterator[None]:
    """Fail with ``Stalled`` once the block has run ``budget`` seconds.

    Regular-expression matching holds the GIL and only notices signals in the main thread,
    so the block must run the request in the main thread (WSGI in-process, or ASGI on an
    event loop in this thread). pytest-timeout's own SIGALRM timer is put back afterwards."""

    def alarm(signum: int, frame: Any) -> None:
        raise Stalled(f"still running after {budget} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, budget)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay:
            left = max(0.001, outer_delay - (time.monotonic() - started))
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)


# One recorder per module -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _module_recorder() -> Iterator[Recorder]:
    with Recorder() as recorder:
        # The recorder writes an answer's headers and body separately: without this each
        # answer waits ~40 ms for a delayed ACK (see stacks.py).
        recorder.server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        yield recorder


@pytest.fixture(name="recorder")
def recorder_fixture(_module_recorder: Recorder) -> Recorder:
    """conftest's ``recorder``, but one server per module, emptied for each test: stopping a
    server takes up to its 50 ms poll interval, which over a hundred short tests is seconds.
    (conftest's ``settings`` and ``make_agent`` use this one, and shut their agents down
    after each test as before.)"""
    recorder = _module_recorder
    with recorder.arrived:
        recorder.received.clear()
        recorder.script.clear()
        recorder.etag_cycle.clear()
        recorder.get_answers.clear()
        recorder.config_etag = None
        recorder.default = Answer()
    return recorder
