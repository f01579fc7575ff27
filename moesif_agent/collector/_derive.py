"""What the collector derives from an event when it arrives: its route template, its duration
and the text its search index holds.

Computed once at ingest (on the thread that validated the event, which has it parsed), so the
dashboard's summaries read plain columns instead of parsing 200,000 JSON documents.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

# A path segment that is an identifier rather than part of the route: a number, a uuid, or a
# long hex string (object ids, hashes). /items/42 and /items/43 are one endpoint.
_ID_SEGMENT = re.compile(
    r"\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}"
)
_MAYBE_ID = re.compile(r"\d|[0-9a-fA-F]{16}")  # most paths have neither: one scan
_ID = "{id}"


# What even ensure_ascii=False leaves escaped: in "line1\nline2" the tokenizer would see the
# word "nline2". Each escape becomes a space, as the character it stands for would.
_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|[^u])")


def _make_encoder() -> Callable[[Any], str]:
    """JSON text with non-ASCII characters as they are (the tokenizer must see "café", not
    "caf\\u00e9"), from CPython's C encoder built once: ``json.dumps`` builds one per call,
    which costs as much as encoding a small body. (Parsed JSON has no cycles: no markers.)"""
    make = getattr(json.encoder, "c_make_encoder", None)
    escape = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or escape is None:
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    encode = make(None, str, escape, None, ":", ",", False, False, True)
    return lambda value: "".join(encode(value, 0))


_body_text = _make_encoder()


def normalise_path(path: str) -> str:
    """``/users/42/orders/6f1c...`` -> ``/users/{id}/orders/{id}``."""
    if _MAYBE_ID.search(path) is None:
        return path
    segments = path.split("/")
    changed = False
    for index, segment in enumerate(segments):
        if segment and segment[0].isalnum() and _ID_SEGMENT.fullmatch(segment):
            segments[index] = _ID
            changed = True
    return "/".join(segments) if changed else path


def route_of(path: str, metadata: dict[str, Any] | None) -> str:
    """The route template the framework reported (``metadata.route``), else the normalised
    path."""
    if metadata is not None:
        route = metadata.get("route")
        if type(route) is str and route:
            return route
    return normalise_path(path)


def _body(part: dict[str, Any]) -> str:
    body = part.get("body")
    if body is None:
        return ""
    if part.get("transfer_encoding") == "base64":
        # Text sent as base64 (plain text, forms, XML) is searchable; binary data is not.
        try:
            return base64.b64decode(body).decode("utf-8")
        except (binascii.Error, ValueError, TypeError):
            return ""
    if type(body) is str:
        return body
    text = _body_text(body)
    return _ESCAPE.sub(" ", text) if "\\" in text else text


def search_text(uri: str, request: dict[str, Any], response: dict[str, Any] | None) -> str:
    """What full-text search looks in: the URI, the headers and the bodies as text (a JSON
    body's strings unescaped, a base64 text body decoded). Headers were validated as a
    mapping of strings."""
    # Runs for every event on the ingest path: joins rather than formatting per header.
    text = "\n".join(map(": ".join, request["headers"].items()))
    parts = [uri, text, _body(request)]
    if response is not None:
        parts += ["\n".join(map(": ".join, response["headers"].items())), _body(response)]
    return "\n".join(parts)
