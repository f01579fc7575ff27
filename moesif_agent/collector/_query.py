"""Read API query strings -> SQL conditions, one table of filters per resource.

``GET /api/events?verb=POST&status=5xx&route=/items/{id}&q=timeout&time__gt=2024-02-06T00:00:00Z``
Every filter is validated; a bad value is a 400 that names the filter and what to write.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import ClientError
from ._inputs import MAX_INT, BadPattern, compile_pattern, parse_int
from ._timefmt import parse_iso

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

Condition = tuple[str, list[Any]]
Builder = Callable[[str, str], Condition]

_CLASS = re.compile(r"([1-5])[xX][xX]")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _bad(name: str, message: str) -> ClientError:
    return ClientError(400, f"bad filter {name}: {message}", field=name)


def _equals(column: str) -> Builder:
    return lambda name, value: (f"{column} = ?", [value])


def _verb(name: str, value: str) -> Condition:
    return "verb = ?", [value.upper()]


def _status(name: str, value: str) -> Condition:
    value = value.strip()
    code = parse_int(value, 0, 999)
    if code is not None:
        return "status = ?", [code]
    match = _CLASS.fullmatch(value)
    if match is None:
        raise _bad(name, f"{value[:32]!r} is neither a status code (0 to 999) nor a class (4xx)")
    low = int(match.group(1)) * 100
    return "status BETWEEN ? AND ?", [low, low + 99]


def _path(name: str, value: str) -> Condition:
    try:
        compile_pattern(value)
    except BadPattern as exc:
        raise _bad(name, f"{value[:64]!r} {exc}") from None
    return "path REGEXP ?", [value]


def _search(name: str, value: str) -> Condition:
    """Words to find in the URI, headers or bodies: each whitespace-separated term must
    occur, as a phrase of its words (``items/42`` finds "items" then "42"), the last word of
    each term as a prefix. Quoted for FTS5, so no input is FTS5 syntax."""
    terms = [term for term in value.split() if any(c.isalnum() for c in term)]
    if not terms:
        raise _bad(name, f"{value[:32]!r} has no word to search for (letters or digits)")
    expression = " AND ".join('"' + term.replace('"', '""') + '"*' for term in terms)
    return "id IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)", [expression]


def _blocked(name: str, value: str) -> Condition:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return "blocked_by IS NOT NULL", []
    if lowered in _FALSE:
        return "blocked_by IS NULL", []
    raise _bad(name, f"{value[:32]!r} is not a boolean (true or false)")


def _time(operator: str) -> Builder:
    def build(name: str, value: str) -> Condition:
        micros = parse_iso(value.strip())
        if micros is None:
            raise _bad(name, f"{value[:64]!r} is not an ISO 8601 time (2024-02-06T04:45:42Z)")
        return f"time {operator} ?", [micros]

    return build


_TIME_FILTERS: dict[str, Builder] = {"time__gt": _time(">"), "time__lt": _time("<")}


@dataclass(frozen=True)
class Resource:
    """One listable resource of the read API: ``/api/<name>`` lists the table of that name."""

    name: str
    singular: str
    key: str  # column looked up by GET /api/<name>/{key}
    key_is_int: bool
    order: tuple[str, ...]
    fields: str  # SQL producing the store fields spliced into each item
    filters: Mapping[str, Builder] = field(default_factory=dict)


def _fields(*pairs: tuple[str, str]) -> str:
    parts = []
    for name, expr in pairs:
        parts.append(f"',\"{name}\":' || {expr}")
    return " || ".join(parts)


def _iso(column: str) -> str:
    return f"'\"' || strftime('%Y-%m-%dT%H:%M:%fZ', {column} / 1000000.0, 'unixepoch') || '\"'"


EVENTS = Resource(
    name="events",
    singular="event",
    key="id",
    key_is_int=True,
    order=("time", "id"),
    fields=_fields(("_id", "id"), ("_received_at", _iso("received_at"))),
    filters={
        "verb": _verb,
        "status": _status,
        "route": _equals("route"),
        "path": _path,
        "q": _search,
        "user_id": _equals("user_id"),
        "company_id": _equals("company_id"),
        "blocked": _blocked,
        "direction": _equals("direction"),
        "transaction_id": _equals("transaction_id"),
        **_TIME_FILTERS,
    },
)
ACTIONS = Resource(
    name="actions",
    singular="action",
    key="id",
    key_is_int=True,
    order=("time", "id"),
    fields=EVENTS.fields,
    filters={
        "action_name": _equals("action_name"),
        "user_id": _equals("user_id"),
        "company_id": _equals("company_id"),
        "transaction_id": _equals("transaction_id"),
        **_TIME_FILTERS,
    },
)
_PROFILE_FIELDS = _fields(
    ("_id", "id"), ("_created_at", _iso("created_at")), ("_received_at", _iso("received_at"))
)
# Profiles are listed newest created first (their id order): stable under updates.
USERS = Resource(
    name="users",
    singular="user",
    key="user_id",
    key_is_int=False,
    order=("id",),
    fields=_PROFILE_FIELDS,
    filters={"company_id": _equals("company_id")},
)
COMPANIES = Resource(
    name="companies",
    singular="company",
    key="company_id",
    key_is_int=False,
    order=("id",),
    fields=_PROFILE_FIELDS,
)
SUBSCRIPTIONS = Resource(
    name="subscriptions",
    singular="subscription",
    key="subscription_id",
    key_is_int=False,
    order=("id",),
    fields=_PROFILE_FIELDS,
    filters={"company_id": _equals("company_id"), "status": _equals("status")},
)
RESOURCES = {r.name: r for r in (EVENTS, ACTIONS, USERS, COMPANIES, SUBSCRIPTIONS)}


@dataclass(frozen=True)
class ListQuery:
    where: list[str]
    params: list[Any]
    after: tuple[int, ...] | None
    limit: int


def encode_cursor(resource: Resource, key: tuple[int, ...]) -> str:
    text = resource.name + ":" + ".".join(str(part) for part in key)
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def _decode_cursor(resource: Resource, value: str) -> tuple[int, ...]:
    problem = "use the next_cursor of a previous page of this list"
    try:
        padded = value + "=" * (-len(value) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, ValueError):
        raise _bad("cursor", f"not a cursor; {problem}") from None
    name, _, rest = text.partition(":")
    parts = rest.split(".")
    if name != resource.name or len(parts) != len(resource.order):
        raise _bad("cursor", f"not a cursor of /api/{resource.name}; {problem}")
    key = []
    for part in parts:
        number = parse_int(part, -MAX_INT, MAX_INT)
        if number is None:
            raise _bad("cursor", f"not a cursor; {problem}")
        key.append(number)
    return tuple(key)


@dataclass(frozen=True)
class Filters:
    """The conditions of a request's filters, and the values of its other parameters."""

    where: list[str]
    params: list[Any]
    options: dict[str, str]


def parse_filters(
    resource: Resource, params: Mapping[str, list[str]], path: str, options: tuple[str, ...]
) -> Filters:
    """Validated conditions for ``resource``'s filters in ``params`` (each name mapped to all
    its values); the names in ``options`` are left to the caller, anything else is a 400."""
    where: list[str] = []
    args: list[Any] = []
    found: dict[str, str] = {}
    for name, values in params.items():
        if len(values) != 1:
            raise _bad(name, "give it once")
        if name in options:
            found[name] = values[0]
        elif name in resource.filters:
            clause, clause_args = resource.filters[name](name, values[0])
            where.append(clause)
            args.extend(clause_args)
        else:
            known = ", ".join([*resource.filters, *options])
            raise _bad(name, f"unknown filter for {path}; known: {known}")
    return Filters(where, args, found)


def parse_query(resource: Resource, params: Mapping[str, list[str]]) -> ListQuery:
    """Validated conditions for a list request; ``params`` maps each name to all its values."""
    filters = parse_filters(resource, params, f"/api/{resource.name}", ("limit", "cursor"))
    limit = DEFAULT_LIMIT
    value = filters.options.get("limit")
    if value is not None:
        number = parse_int(value.strip(), 1, MAX_LIMIT)
        if number is None:
            raise _bad("limit", f"{value[:32]!r} is not an integer from 1 to {MAX_LIMIT}")
        limit = number
    cursor = filters.options.get("cursor")
    after = None if cursor is None else _decode_cursor(resource, cursor)
    return ListQuery(filters.where, filters.params, after, limit)
