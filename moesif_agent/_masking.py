"""Masking of headers, bodies and query strings (runs on the worker thread only).

Masked values are replaced by ``MASK`` rather than removed, so the event still shows that the
field existed. Header names and body keys are compared case-insensitively, and body keys also
ignore ``-`` and ``_`` (``cardNumber``, ``card_number`` and ``card-number`` are one key).
"""

from __future__ import annotations

import json
import re
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus, unquote_plus

from ._textmask import MASK, mask_multipart, mask_text

if TYPE_CHECKING:
    from ._options import Options

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
    "authorization",
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

    __slots__ = ("_probe", "_seen", "keys", "suffixes")

    def __init__(self, keys: tuple[str, ...], suffixes: tuple[str, ...]) -> None:
        self.keys = frozenset(normalize_key(k) for k in keys)
        self.suffixes = suffixes
        self._seen: dict[str, bool] = {}  # body keys repeat: decide each one once
        words = sorted(self.keys | set(suffixes), key=len)
        words = [w for i, w in enumerate(words) if not any(v in w for v in words[:i])]
        self._probe: re.Pattern[bytes] | None = None
        if words and all(word.isascii() for word in words):
            self._probe = re.compile(b"|".join(re.escape(w.encode()) for w in words))

    def may_occur(self, raw: bytes) -> bool:
        """Whether a key to mask may occur in ``raw`` (a JSON text): one C-level scan, so that
        most bodies are never walked. Escapes (\\u0070assword) may spell anything."""
        if not self.keys and not self.suffixes:
            return False
        probe = self._probe
        if probe is None or (b"\\" in raw and b"\\u" in raw):  # memchr first: most have none
            return True
        low = raw.lower()
        if b"_" in low or b"-" in low or b" " in low:
            low = low.replace(b"_", b"").replace(b"-", b"").replace(b" ", b"")
        return probe.search(low) is not None

    def __bool__(self) -> bool:
        return bool(self.keys or self.suffixes)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        known = self._seen.get(key)
        return self.decide(key) if known is None else known

    def decide(self, key: str) -> bool:
        norm = normalize_key(key)
        if norm.endswith("]") and "[" in norm:  # user[password], items[0][token]: innermost
            inner = norm[norm.rfind("[") + 1 : -1]
            norm = inner if inner and not inner.isdigit() else norm[: norm.find("[")]
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
        # Headers the user id is read from are credentials too (after the id was taken).
        credentials = options.authorization_header_name if defaults else ()
        self.request_headers = frozenset(
            h.lower() for h in (*header_defaults, *credentials, *options.request_header_masks)
        )
        self.response_headers = frozenset(
            h.lower() for h in (*header_defaults, *options.response_header_masks)
        )
        # A header named like a secret field (X-Client-Secret, X-Refresh-Token) is one.
        self.header_keys = KeySet(key_defaults, suffixes)
        self.request_keys = KeySet((*key_defaults, *options.request_body_masks), suffixes)
        self.response_keys = KeySet((*key_defaults, *options.response_body_masks), suffixes)
        self.query_keys = KeySet((*key_defaults, *options.uri_query_masks), suffixes)
        # header name -> its lower-case name when it is to be masked, else "" (per mask set)
        self._decided: dict[frozenset[str], dict[str, str]] = {}

    # Headers

    def headers(self, headers: dict[str, str], names: frozenset[str]) -> dict[str, str]:
        """Mask, in place, the headers named in ``names`` or named like a secret field."""
        keys = self.header_keys
        if not names and not keys:
            return headers
        decided = self._decided.get(names)
        if decided is None:
            decided = self._decided[names] = {}
        for name, value in headers.items():
            lowered = decided.get(name)
            if lowered is None:  # header names repeat: each is decided once per mask set
                low = name.lower()
                lowered = low if low in names or low in keys else ""
                if len(decided) < 4096:
                    decided[name] = lowered
            if lowered:
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
                    elif item.__class__ is str and item[:1] in _JSON_OPENERS:
                        masked = self._json_string(item, keys)
                        if masked is not None:
                            node[key] = masked
                            changed = True
            else:
                for index, item in enumerate(node):
                    if item.__class__ in _CONTAINERS:
                        push(item)
                    elif item.__class__ is str and item[:1] in _JSON_OPENERS:
                        masked = self._json_string(item, keys)
                        if masked is not None:
                            node[index] = masked
                            changed = True
        return changed

    def _json_string(self, text: str, keys: KeySet) -> str | None:
        """A string holding JSON (``"{\"token\": ...}"``), masked inside; None if unchanged."""
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if value.__class__ not in _CONTAINERS or not self.json(value, keys):
            return None
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def text(self, text: str, keys: KeySet) -> str:
        """Mask a body that is not strict JSON, key by key (see ``_textmask``)."""
        return mask_text(text, keys)

    def multipart(self, text: str, boundary: str | None, keys: KeySet) -> str:
        """Mask a ``multipart/form-data`` body part by part (see ``_textmask``)."""
        return mask_multipart(text, boundary, keys)

    def form(self, body: str, keys: KeySet) -> str:
        """Mask an ``application/x-www-form-urlencoded`` body or a query string, pair by pair
        (``&`` or ``;`` separated), keeping the rest as it was encoded; JSON in a value is
        masked inside."""
        if not keys or not body:
            return body
        return _FORM_PAIR.sub(partial(self._form_pair, keys), body)

    def _form_pair(self, keys: KeySet, match: re.Match[str]) -> str:
        head, value = match.group("head"), match.group("value")
        if unquote_plus(match.group("key")) in keys:
            return head + MASK
        if value[:1] in _JSON_OPENERS or value[:3] in ("%7B", "%7b", "%5B", "%5b"):
            masked = self._json_string(unquote_plus(value), keys)
            if masked is not None:
                return head + quote_plus(masked, safe='[]{}:,"')
        return match.group(0)


_FORM_PAIR = re.compile(r"(?P<head>(?:^|(?<=[&;]))(?P<key>[^=&;]{1,256})=)(?P<value>[^&;]*)")
_JSON_OPENERS = ("{", "[")


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
