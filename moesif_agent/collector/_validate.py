"""Check Collector API events and actions against the field tables of the spec and turn them
into store rows (profiles: ``_profiles``, with the helpers from here).

Runs on a worker thread. Hand-written checks rather than a schema library: a batch of 100 events
is validated in well under a millisecond, and every error names the JSON path of the bad field.
Unknown fields are accepted and kept (the protocol grows); ``null`` counts as "not given" for
optional fields.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from ._body import too_large
from ._derive import route_of, search_text
from ._errors import ClientError
from ._timefmt import parse_iso

MAX_ITEM_BYTES = 1024 * 1024
MAX_BATCH_BYTES = 50 * 1024 * 1024
# The spec documents a smaller batch for actions ("Track User Actions in Batch": 12MB).
MAX_ACTIONS_BATCH_BYTES = 12 * 1024 * 1024

DIRECTIONS = frozenset({"Incoming", "Outgoing"})
# The calls one sampled event stands for (100 at a 1% sample rate). The summaries add weights
# up in SQLite's 64-bit integers: at this bound, four billion events cannot overflow them.
MAX_WEIGHT = 2**31 - 1
_TRANSFER_ENCODINGS = ("", "json", "base64")

# (transaction_id, time, verb, status, path, user_id, company_id, blocked_by, direction,
#  received_at, data, route, duration (microseconds), weight, search)
EventRow = tuple[
    str | None,
    int,
    str,
    int | None,
    str,
    str | None,
    str | None,
    str | None,
    str | None,
    int,
    str,
    str,
    int | None,
    int,
    str,
]
# (transaction_id, time, action_name, user_id, company_id, received_at, data)
ActionRow = tuple[str | None, int, str, str | None, str | None, int, str]

_TYPE_NAMES: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def json_kind(value: object) -> str:
    """How JSON calls the type of ``value``: an object, an array, a string..."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _wrong(field: str, expected: str, value: object) -> ClientError:
    return ClientError(400, f"{field} must be {expected}, not {json_kind(value)}", field=field)


def _missing(field: str, expected: str) -> ClientError:
    return ClientError(400, f"{field} is required ({expected})", field=field)


def object_at(
    parent: dict[str, Any], key: str, field: str, required: bool
) -> dict[str, Any] | None:
    value = parent.get(key)
    if value is None:
        if required:
            raise _missing(field, "an object")
        return None
    if type(value) is not dict:
        raise _wrong(field, "an object", value)
    return value


def string_at(parent: dict[str, Any], key: str, field: str, required: bool = False) -> str | None:
    value = parent.get(key)
    if value is None or (required and value == ""):
        if required:
            raise _missing(field, "a non-empty string")
        return None
    if type(value) is not str:
        raise _wrong(field, "a string", value)
    if not value.isascii():
        # The value becomes an indexed column: SQLite needs it encodable as UTF-8.
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ClientError(
                400, f"{field} contains an unpaired UTF-16 surrogate", field=field
            ) from None
    return value


def time_at(parent: dict[str, Any], key: str, field: str, required: bool) -> int | None:
    value = parent.get(key)
    if value is None:
        if required:
            raise _missing(field, "an ISO 8601 date-time string")
        return None
    if type(value) is not str:
        raise _wrong(field, "an ISO 8601 date-time string", value)
    micros = parse_iso(value)
    if micros is None:
        raise ClientError(
            400,
            f"{field} is not an ISO 8601 date-time: {value[:64]!r} "
            "(expected e.g. 2024-02-06T04:45:42.914Z)",
            field=field,
        )
    return micros


def _headers(part: dict[str, Any], field: str) -> None:
    headers = part.get("headers")
    if headers is None:
        raise _missing(field, "an object mapping header names to strings")
    if type(headers) is not dict:
        raise _wrong(field, "an object mapping header names to strings", headers)
    for name, value in headers.items():
        if type(value) is not str:
            raise _wrong(f"{field}.{name}", "a string (join repeated headers with ', ')", value)


def _body(part: dict[str, Any], name: str) -> None:
    field = f"{name}.transfer_encoding"
    encoding = string_at(part, "transfer_encoding", field)
    if encoding is None or encoding in ("", "json"):
        return
    if encoding != "base64":
        raise ClientError(
            400, f'{field} must be "json" or "base64", not {encoding[:32]!r}', field=field
        )
    body = part.get("body")
    if body is None:
        return
    if type(body) is not str:
        raise _wrong(f"{name}.body", "a base64 string (transfer_encoding is base64)", body)
    try:
        base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ClientError(
            400, f"{name}.body is not valid base64 ({exc})", field=f"{name}.body"
        ) from None


def strings_at(item: dict[str, Any], prefix: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        string_at(item, key, prefix + key)


def _sized(text: str, what: str) -> str:
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size > MAX_ITEM_BYTES:
        raise too_large(what, size, MAX_ITEM_BYTES, "truncate large bodies or drop fields from it")
    return text


_URI_PATH = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)?([^?#]*)")


def uri_path(uri: str) -> str:
    """The path of a full URI (``https://h/a/b?q`` -> ``/a/b``); a bare path passes through."""
    found = _URI_PATH.match(uri)
    return (found.group(1) if found else "") or "/"


_PLAIN_BODY = (None, "", "json")
_EVENT_COLUMNS = ("transaction_id", "user_id", "company_id", "blocked_by")
_ACTION_COLUMNS = ("transaction_id", "user_id", "company_id")


def _not_string(value: object, field: str) -> ClientError:
    """The error for ``value`` at ``field``, which should be a non-empty string."""
    if value is None or value == "":
        return _missing(field, "a non-empty string")
    return _wrong(field, "a string", value)


def _not_object(value: object, field: str) -> ClientError:
    return _missing(field, "an object") if value is None else _wrong(field, "an object", value)


def _optional_strings(part: dict[str, Any], prefix: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        value = part.get(key)
        if value is not None and type(value) is not str:
            raise _wrong(prefix + key, "a string", value)


def _columns(item: dict[str, Any], keys: tuple[str, ...]) -> list[str | None]:
    """Optional top-level strings that become indexed columns."""
    values = [item.get(key) for key in keys]
    for key, value in zip(keys, values, strict=True):
        if value is not None and (type(value) is not str or not value.isascii()):
            string_at(item, key, key)  # raises for a non-string or unencodable text
    return values


# The two validators below run for every event and action: the checks are inline and the
# helpers only build the error message, so a valid item costs a few dict lookups per field.


def _event(item: object, text: str, received_at: int) -> EventRow:
    if type(item) is not dict:
        raise ClientError(400, f"an event must be a JSON object, not {json_kind(item)}")
    request = item.get("request")
    if type(request) is not dict:
        raise _not_object(request, "request")
    request_time = time_at(request, "time", "request.time", True)
    assert request_time is not None
    uri = request.get("uri")
    if type(uri) is not str or not uri:
        raise _not_string(uri, "request.uri")
    verb = request.get("verb")
    if type(verb) is not str or not verb:
        raise _not_string(verb, "request.verb")
    _headers(request, "request.headers")
    _optional_strings(request, "request.", ("api_version", "ip_address"))
    if request.get("transfer_encoding") not in _PLAIN_BODY:
        _body(request, "request")
    status = duration = None
    response = item.get("response")
    if response is not None:
        if type(response) is not dict:
            raise _wrong("response", "an object", response)
        response_time = time_at(response, "time", "response.time", True)
        assert response_time is not None
        duration = response_time - request_time
        status = response.get("status")
        if type(status) is not int or not 0 <= status <= 999:
            if type(status) is int:
                raise ClientError(
                    400,
                    f"response.status must be an HTTP status code (0-999), not {status}",
                    field="response.status",
                )
            if status is None:
                raise _missing("response.status", "an integer HTTP status code")
            raise _wrong("response.status", "an integer HTTP status code", status)
        _headers(response, "response.headers")
        _optional_strings(response, "response.", ("ip_address",))
        if response.get("transfer_encoding") not in _PLAIN_BODY:
            _body(response, "response")
    direction = item.get("direction")
    if direction is not None and (type(direction) is not str or direction not in DIRECTIONS):
        shown = repr(direction[:32]) if type(direction) is str else json_kind(direction)
        raise ClientError(
            400, f'direction must be "Incoming" or "Outgoing", not {shown}', field="direction"
        )
    _optional_strings(item, "", ("session_token",))
    metadata = item.get("metadata")
    if metadata is not None and type(metadata) is not dict:
        raise _wrong("metadata", "an object", metadata)
    weight = item.get("weight")
    if weight is not None and (type(weight) is not int or not 0 <= weight <= MAX_WEIGHT):
        if type(weight) is not int or weight < 0:
            raise _wrong("weight", "a non-negative integer", weight)
        digits = str(weight)
        shown = digits if len(digits) <= 20 else f"a {len(digits)}-digit number"
        raise ClientError(
            400,
            f"weight must be a non-negative integer, at most {MAX_WEIGHT}, not {shown}",
            field="weight",
        )
    transaction_id, user_id, company_id, blocked_by = _columns(item, _EVENT_COLUMNS)
    path = uri_path(uri)
    return (
        transaction_id,
        request_time,
        verb.upper(),
        status,
        path,
        user_id,
        company_id,
        blocked_by,
        direction,
        received_at,
        _sized(text, "event"),
        route_of(path, metadata),
        duration,
        1 if weight is None else weight,
        search_text(uri, request, response),
    )


def _action(item: object, text: str, received_at: int) -> ActionRow:
    if type(item) is not dict:
        raise ClientError(400, f"an action must be a JSON object, not {json_kind(item)}")
    name = item.get("action_name")
    if type(name) is not str or not name or not name.isascii():
        name = string_at(item, "action_name", "action_name", True)
        assert name is not None
    request = item.get("request")
    if type(request) is not dict:
        raise _not_object(request, "request")
    uri = request.get("uri")
    if type(uri) is not str or not uri:
        raise _not_string(uri, "request.uri")
    when = time_at(request, "time", "request.time", False)
    _optional_strings(request, "request.", ("ip_address", "user_agent_string"))
    _optional_strings(item, "", ("session_token",))
    metadata = item.get("metadata")
    if metadata is not None and type(metadata) is not dict:
        raise _wrong("metadata", "an object", metadata)
    transaction_id, user_id, company_id = _columns(item, _ACTION_COLUMNS)
    return (
        transaction_id,
        received_at if when is None else when,
        name,
        user_id,
        company_id,
        received_at,
        _sized(text, "action"),
    )


def each(items: list[Any], check: Callable[[Any], Any], batch: bool) -> list[Any]:
    out = []
    for index, item in enumerate(items):
        try:
            out.append(check(item))
        except ClientError as exc:
            raise exc.at(index if batch else None) from None
    return out


def events(items: list[tuple[Any, str]], received_at: int, batch: bool) -> list[EventRow]:
    """Rows for ``items``, each a parsed event and its JSON text."""
    return each(items, lambda pair: _event(pair[0], pair[1], received_at), batch)


def actions(items: list[tuple[Any, str]], received_at: int, batch: bool) -> list[ActionRow]:
    return each(items, lambda pair: _action(pair[0], pair[1], received_at), batch)
