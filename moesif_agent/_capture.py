"""Capture helpers shared by every adapter: transaction ids, the environ capture, header
access, the user from credentials (who the client is lives in ``_forwarding``).

The ones the request thread calls on every request (``new_transaction_id``, a pop from ids
the worker made ahead; ``fill_from_environ``) allocate little; the rest (header maps, the
credentials rule) normally run on the worker when it builds the wire event, and on the
request thread only when sampling or governance needs them before the event is queued.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import random
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ._exchange import HEADERS_ASGI, HEADERS_WSGI, Exchange

TRANSACTION_ID_HEADER = "X-Moesif-Transaction-Id"

_getrandbits = random.getrandbits  # re-seeded in forked children by the random module
_VERSION_4 = 0x4000 << 64 | 0x8000 << 48  # version nibble 4, RFC 4122 variant bits
_KEEP = ~(0xF000 << 64 | 0xC000 << 48) & ((1 << 128) - 1)


# Ids made ahead by the worker (``refill_transaction_ids``): taking one costs a request thread
# a deque pop instead of formatting a UUID (about 20 times as much).
_ready_ids: deque[str] = deque()
_READY_LOW = 1024
_READY_SIZE = 4096
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_transaction_id() -> str:
    """A random version 4 UUID string."""
    try:
        return _ready_ids.pop()
    except IndexError:
        return fresh_transaction_id()


def fresh_transaction_id() -> str:
    """A version 4 UUID made now. Transaction ids must be unique, not secret, so the
    non-cryptographic generator (no system call) is enough."""
    h = f"{_getrandbits(128) & _KEEP | _VERSION_4:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def refill_transaction_ids() -> None:
    """Top up the ids made ahead, once fewer than ``_READY_LOW`` are left (worker thread)."""
    missing = _READY_SIZE - len(_ready_ids)
    if missing <= _READY_SIZE - _READY_LOW:
        return
    digits = os.urandom(16 * missing).hex()
    variant = _VARIANT
    _ready_ids.extend(
        f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant[h[16]]}{h[17:20]}-{h[20:32]}"
        for h in (digits[i : i + 32] for i in range(0, len(digits), 32))
    )


if hasattr(os, "register_at_fork"):  # a child must not hand out ids its parent also will
    os.register_at_fork(after_in_child=_ready_ids.clear)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


def valid_transaction_id(value: str | None) -> str | None:
    """An incoming transaction id the wire can carry: a canonical UUID (lower-cased)."""
    if value and len(value) == 36 and _UUID.fullmatch(value):
        return value.lower()
    return None


def assign_transaction_id(ex: Exchange, incoming: str | None, trusted: bool) -> bool:
    """Set ``ex.transaction_id``: the incoming id when a trusted peer sent a UUID, else a new
    one (a client must not pick the id its calls are recorded, deduplicated and sampled under;
    what it sent is kept in the event's notes). True when the id is not ``incoming``, so
    the app must be told the new one."""
    if incoming:
        txid = valid_transaction_id(incoming) if trusted else None
        if txid is not None:
            ex.transaction_id = txid
            return txid != incoming
        if len(incoming) <= 128 and incoming.isprintable():
            ex.notes = {**(ex.notes or {}), "incoming_transaction_id": incoming}
    ex.transaction_id = new_transaction_id()
    return True


def wsgi_text(value: str) -> str:
    """A PEP 3333 string (bytes carried as latin-1 characters) as the text it encodes."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a server that already decoded it
        return value


_NOT_HEADERS = ("wsgi.input", "wsgi.errors", "wsgi.file_wrapper", "gunicorn.socket")
_TXID_ENVIRON = "HTTP_" + TRANSACTION_ID_HEADER.upper().replace("-", "_")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def fill_from_environ(
    ex: Exchange,
    environ: dict[str, Any],
    scheme: str,
    echo_transaction_id: bool,
    trusts: Callable[[str | None], bool],
) -> None:
    """Host, client address, transaction id and headers from a WSGI environ (or Django's
    ``request.META``, which has the same keys). With ``echo_transaction_id`` the environ gets
    the id the call is recorded under, so the app sees that one. ``trusts(peer)`` says
    whether the peer may choose the id."""
    ex.scheme = scheme
    host = environ.get("HTTP_HOST")  # raw: validating it is the framework's business
    if not host:
        host = environ.get("SERVER_NAME") or "localhost"
        port = str(environ.get("SERVER_PORT") or "")
        if port and port != _DEFAULT_PORTS.get(scheme):
            host = f"{host}:{port}"
    ex.host = host
    peer = ex.remote_addr = environ.get("REMOTE_ADDR") or None  # "": a unix socket
    incoming = environ.get(_TXID_ENVIRON)
    if incoming is None:
        ex.transaction_id = txid = new_transaction_id()
        if echo_transaction_id:
            environ[_TXID_ENVIRON] = txid
    elif assign_transaction_id(ex, incoming, trusts(peer)) and echo_transaction_id:
        environ[_TXID_ENVIRON] = ex.transaction_id
    # A copy in C is ten times cheaper than picking the headers out here: the worker picks.
    # What holds a connection or a stream is let go at once.
    headers = environ.copy()
    for key in _NOT_HEADERS:
        if key in headers:
            del headers[key]
    ex.request_headers = headers
    ex.request_header_style = HEADERS_WSGI


# Header names ---------------------------------------------------------------------------------

_name_cache: dict[Any, str] = {}
_NAME_CACHE_MAX = 2048


def _title(name: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


def wsgi_header_name(key: str) -> str:
    """``HTTP_X_API_KEY`` -> ``X-Api-Key``; ``CONTENT_TYPE`` -> ``Content-Type``."""
    name = _name_cache.get(key)
    if name is None:
        raw = key[5:] if key.startswith("HTTP_") else key
        name = _title(raw.lower().replace("_", "-"))
        if len(_name_cache) < _NAME_CACHE_MAX:
            _name_cache[key] = name
    return name


def asgi_header_name(key: bytes) -> str:
    """``b"x-api-key"`` -> ``X-Api-Key``."""
    name = _name_cache.get(key)
    if name is None:
        name = _title(key.decode("latin-1").lower())
        if len(_name_cache) < _NAME_CACHE_MAX:
            _name_cache[key] = name
    return name


def environ_headers(raw: Any) -> Iterable[tuple[str, str]]:
    """The (key, value) header entries of an environ (or of a list of such pairs)."""
    items = raw.items() if isinstance(raw, dict) else raw
    return [
        (k, v) for k, v in items if k[:5] == "HTTP_" or k == "CONTENT_TYPE" or k == "CONTENT_LENGTH"
    ]


def header_items(style: int, raw: Iterable[Any]) -> list[tuple[str, str]]:
    """Headers as (name, value) strings in their usual case, whatever form they were kept in."""
    if style == HEADERS_WSGI:
        return [(wsgi_header_name(k), v) for k, v in environ_headers(raw)]
    if style == HEADERS_ASGI:
        return [(asgi_header_name(k), v.decode("latin-1")) for k, v in raw]
    return [(str(k), str(v)) for k, v in raw]


def header_dict(style: int, raw: Sequence[Any]) -> dict[str, str]:
    """Headers as the wire map: repeated names joined with ", " (Set-Cookie included)."""
    if style == HEADERS_WSGI:  # environ keys are unique: the server already joined repeats
        cache = _name_cache
        return {cache.get(k) or wsgi_header_name(k): v for k, v in environ_headers(raw)}
    if style == HEADERS_ASGI:
        cache = _name_cache
        fast = {cache.get(k) or asgi_header_name(k): v.decode("latin-1") for k, v in raw}
        if len(fast) == len(raw):  # names are lower case, so only exact repeats can occur
            return fast
    result: dict[str, str] = {}
    lowered: dict[str, str] = {}
    for name, value in header_items(style, raw):
        key = name.lower()
        first = lowered.get(key)
        if first is None:
            lowered[key] = name
            result[name] = value
        else:
            result[first] = result[first] + ", " + value
    return result


_lower_cache: dict[str, str] = {}


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The same map with lower-case names (names repeat from request to request: cached)."""
    cache = _lower_cache
    result = {}
    for name, value in headers.items():
        low = cache.get(name)
        if low is None:
            low = name.lower()
            if len(cache) < _NAME_CACHE_MAX:
                cache[name] = low
        result[low] = value
    return result


def header_maps(style: int, raw: Sequence[Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(the wire map, the same with lower-case names), in one pass for WSGI environ headers."""
    if style != HEADERS_WSGI:
        joined = header_dict(style, raw)
        return joined, lower_headers(joined)
    names, lowers = _name_cache, _lower_cache
    wire: dict[str, str] = {}
    lower: dict[str, str] = {}
    for key, value in environ_headers(raw):
        name = names.get(key) or wsgi_header_name(key)
        low = lowers.get(name)
        if low is None:
            low = name.lower()
            if len(lowers) < _NAME_CACHE_MAX:
                lowers[name] = low
        wire[name] = value
        lower[low] = value
    return wire, lower


def header_value(style: int, raw: Iterable[Any], name: str) -> str | None:
    """The first value of one header (``name`` lower case), without building a dict."""
    if style == HEADERS_WSGI:
        key = "HTTP_" + name.upper().replace("-", "_")
        if name in ("content-type", "content-length"):
            key = key[5:]
        if isinstance(raw, dict):
            value = raw.get(key)
            return None if value is None else str(value)
        for k, v in raw:
            if k == key:
                return str(v)
        return None
    if style == HEADERS_ASGI:
        bname = name.encode("latin-1")
        for k, v in raw:
            if k == bname:
                return str(v.decode("latin-1"))
        return None
    for k, v in raw:
        if k.lower() == name:
            return str(v)
    return None


# User from credentials -------------------------------------------------------------------------


def _b64decode(segment: str) -> bytes:
    segment = segment.strip()
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _claim(payload: Any, field: str) -> str | None:
    for part in field.split("."):
        if not isinstance(payload, dict) or part not in payload:
            return None
        payload = payload[part]
    if payload is None or isinstance(payload, dict | list):
        return None
    return str(payload)


def user_from_credentials(value: str, field: str) -> str | None:
    """The user id carried by an Authorization-style header value, if it carries one.

    ``Bearer <JWT>`` (or a bare JWT) -> the claim named by ``field`` (dotted paths allowed),
    base64url-decoded without verification (this is analytics, not authentication);
    ``Basic <base64 user:password>`` -> the user name. Anything else -> None.
    """
    value = value.strip()
    scheme, _, credentials = value.partition(" ")
    lowered = scheme.lower()
    try:
        if lowered == "basic" and credentials:
            user = base64.b64decode(credentials.strip(), validate=False).decode("utf-8")
            return user.split(":", 1)[0] or None
        token = credentials.strip() if lowered == "bearer" else value
        parts = token.split(".")
        if len(parts) == 3:
            return _claim(json.loads(_b64decode(parts[1])), field)
    except (ValueError, UnicodeDecodeError, binascii.Error, RecursionError):
        return None
    return None


def credentials_user(
    ex: Exchange, names: Iterable[str], field: str, lower: Mapping[str, str] | None = None
) -> str | None:
    """The user id carried by the request's credentials: the first of ``names``
    (Authorization-style headers) whose value names a user. The one place this rule lives.
    ``lower``: the request's headers with lower-case names, when the caller has them."""
    for name in names:
        name = name.lower()
        if lower is not None:
            value = lower.get(name)
        else:
            value = header_value(ex.request_header_style, ex.request_headers, name)
        if value:
            user = user_from_credentials(value, field)
            if user:
                return user
    return None
