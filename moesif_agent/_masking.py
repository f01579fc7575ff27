"""Masking of headers, bodies and query strings (runs on the worker thread only).

Masked values are replaced by ``MASK`` rather than removed, so the event still shows that the
field existed. Header names and body keys are compared case-insensitively, and body keys also
ignore ``-`` and ``_`` (``cardNumber``, ``card_number`` and ``card-number`` are one key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

if TYPE_CHECKING:
    from ._options import Options

MASK = "[REDACTED]"
_CONTAINERS = (dict, list)

# Redacted unless default_masks=False (the README lists them).
DEFAULT_HEADER_MASKS = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-access-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-amz-security-token",
    "x-goog-api-key",
)
DEFAULT_BODY_KEYS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "authtoken",
    "clientsecret",
    "privatekey",
    "cardnumber",
    "creditcard",
    "ccnumber",
    "cvv",
    "cvc",
    "ssn",
    "pin",
)
# Keys ending like these are secret too (``db_password``, ``stripe_secret``, ``x_auth_token``).
DEFAULT_BODY_SUFFIXES = ("password", "secret", "token", "apikey")

_SCHEME_HEADERS = ("authorization", "proxy-authorization")
_COOKIE_PAIR = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)=([^;,]*)")
_SET_COOKIE_PAIR = re.compile(r"(^|,\s*)([!#$%&'*+\-.^_`|~0-9A-Za-z]+)=([^;]*)")


def normalize_key(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "").replace(" ", "")


class KeySet:
    """A set of body/query keys to mask, with the default suffix rule when enabled."""

    __slots__ = ("_seen", "keys", "suffixes")

    def __init__(self, keys: tuple[str, ...], suffixes: tuple[str, ...]) -> None:
        self.keys = frozenset(normalize_key(k) for k in keys)
        self.suffixes = suffixes
        self._seen: dict[str, bool] = {}  # body keys repeat: decide each one once

    def __bool__(self) -> bool:
        return bool(self.keys or self.suffixes)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        known = self._seen.get(key)
        return self.decide(key) if known is None else known

    def decide(self, key: str) -> bool:
        norm = normalize_key(key)
        known = norm in self.keys or (bool(self.suffixes) and norm.endswith(self.suffixes))
        if len(self._seen) < 10_000:
            self._seen[key] = known
        return known


class Masker:
    """The compiled masks of one agent."""

    def __init__(self, options: Options) -> None:
        defaults = options.default_masks
        header_defaults = DEFAULT_HEADER_MASKS if defaults else ()
        key_defaults = DEFAULT_BODY_KEYS if defaults else ()
        suffixes = DEFAULT_BODY_SUFFIXES if defaults else ()
        self.request_headers = frozenset(
            h.lower() for h in (*header_defaults, *options.request_header_masks)
        )
        self.response_headers = frozenset(
            h.lower() for h in (*header_defaults, *options.response_header_masks)
        )
        self.request_keys = KeySet((*key_defaults, *options.request_body_masks), suffixes)
        self.response_keys = KeySet((*key_defaults, *options.response_body_masks), suffixes)
        self.query_keys = KeySet((*key_defaults, *options.uri_query_masks), suffixes)
        self._lower: dict[str, str] = {}  # header names repeat: lower each once

    # Headers

    def headers(
        self,
        headers: dict[str, str],
        names: frozenset[str],
        lower: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Mask, in place, the headers named in ``names``; ``lower`` (the same headers with
        lower-case names), when given, lets a request with none of them skip the walk."""
        if not names or (lower is not None and names.isdisjoint(lower)):
            return headers
        cache = self._lower
        for name, value in headers.items():
            lowered = cache.get(name)
            if lowered is None:
                lowered = name.lower()
                if len(cache) < 4096:
                    cache[name] = lowered
            if lowered in names:
                headers[name] = _mask_header(lowered, value)
        return headers

    # Bodies

    def json(self, value: Any, keys: KeySet) -> bool:
        """Mask, in place, every value whose key is in ``keys``, at any depth, lists included.

        Returns whether anything was masked."""
        if not keys or value.__class__ not in _CONTAINERS:
            return False
        changed = False
        seen = keys._seen
        decide = keys.decide
        stack = [value]
        pop, push = stack.pop, stack.append
        while stack:
            node = pop()
            if node.__class__ is dict:
                for key, item in node.items():
                    hit = seen.get(key)
                    if hit is None:
                        hit = decide(key)
                    if hit:
                        node[key] = MASK
                        changed = True
                    elif item.__class__ in _CONTAINERS:
                        push(item)
            else:
                for item in node:
                    if item.__class__ in _CONTAINERS:
                        push(item)
        return changed

    def scrub(self, raw: bytes, keys: KeySet) -> bytes:
        """Mask the values of ``keys`` in text that cannot be parsed (a truncated JSON or form
        body), pair by pair. Values nested inside a masked key's object are scrubbed by their
        own keys only."""
        if not keys or not raw:
            return raw

        def json_pair(match: re.Match[bytes]) -> bytes:
            key = match.group(1).decode("utf-8", "replace")
            if "\\" in key:  # escapes such as \u0077 spell ordinary letters
                try:
                    key = json.loads(f'"{key}"')
                except ValueError:
                    pass
            if key not in keys:
                return match.group(0)
            return b'"' + match.group(1) + b'"' + match.group(2) + _MASK_JSON

        def form_pair(match: re.Match[bytes]) -> bytes:
            key = unquote_plus(match.group(2).decode("latin-1"))
            if key not in keys:
                return match.group(0)
            return match.group(1) + match.group(2) + b"=" + MASK.encode()

        return _FORM_PAIR.sub(form_pair, _JSON_PAIR.sub(json_pair, raw))

    def form(self, body: str, keys: KeySet) -> str:
        """Mask an ``application/x-www-form-urlencoded`` body (or a query string)."""
        if not keys or not body:
            return body
        pairs = parse_qsl(body, keep_blank_values=True)
        if not any(key in keys for key, _ in pairs):
            return body
        return urlencode([(k, MASK if k in keys else v) for k, v in pairs], safe="[]")


# "key": value pairs in JSON text, and key=value pairs in form text, as far as they go in a
# body that was cut short (the value may be unterminated).
_JSON_PAIR = re.compile(rb'"((?:[^"\\]|\\.){1,256})"(\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,{}\[\]\s]*)')
_FORM_PAIR = re.compile(rb"(^|[&;?])([^=&;]{1,256})=([^&;]*)")
_MASK_JSON = b'"' + MASK.encode() + b'"'


def _mask_header(name: str, value: str) -> str:
    if name in _SCHEME_HEADERS:
        scheme, sep, _ = value.strip().partition(" ")
        return f"{scheme} {MASK}" if sep and scheme.isalpha() else MASK
    if name == "cookie":
        masked = _COOKIE_PAIR.sub(lambda m: f"{m.group(1)}={MASK}", value)
        return masked if masked != value else MASK
    if name == "set-cookie":
        masked = _SET_COOKIE_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}={MASK}", value)
        return masked if masked != value else MASK
    return MASK
