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
from typing import Any

# A path segment that is an identifier rather than part of the route: a number, a uuid, or a
# long hex string (object ids, hashes). /items/42 and /items/43 are one endpoint.
_ID_SEGMENT = re.compile(
    r"\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}"
)
_ID = "{id}"
_body_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def normalise_path(path: str) -> str:
    """``/users/42/orders/6f1c...`` -> ``/users/{id}/orders/{id}``."""
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
    return body if type(body) is str else _body_text(body)


def _headers(part: dict[str, Any]) -> str:
    headers = part.get("headers")
    if type(headers) is not dict:
        return ""
    return "\n".join([f"{name}: {value}" for name, value in headers.items()])


def search_text(uri: str, request: dict[str, Any], response: dict[str, Any] | None) -> str:
    """What full-text search looks in: the URI, the headers and the bodies as text (a JSON
    body's strings unescaped, a base64 text body decoded)."""
    parts = [uri, _headers(request), _body(request)]
    if response is not None:
        parts += [_headers(response), _body(response)]
    return "\n".join(parts)
