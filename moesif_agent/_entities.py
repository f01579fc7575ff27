"""Users, companies, subscriptions and actions: validated on the caller's thread (so a bad
call fails loudly, at the call), then queued and sent in batches by the worker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._capture import new_transaction_id
from ._wire import iso_time

SUBSCRIPTION_STATUSES = ("active", "cancelled", "paused", "trialing", "pending", "draft", "future")


@dataclass(frozen=True)
class Kind:
    name: str  # the queue/channel name and the API's plural: "users"
    singular: str
    path: str
    required: tuple[str, ...]


KINDS = {
    kind.name: kind
    for kind in (
        Kind("users", "user", "/v1/users/batch", ("user_id",)),
        Kind("companies", "company", "/v1/companies/batch", ("company_id",)),
        Kind(
            "subscriptions",
            "subscription",
            "/v1/subscriptions/batch",
            ("subscription_id", "company_id"),
        ),
        Kind("actions", "action", "/v1/actions/batch", ("action_name",)),
    )
}

_ID_FIELDS = ("user_id", "company_id", "subscription_id", "session_token")
_OBJECT_FIELDS = ("metadata", "campaign", "request")


def validate(kind: Kind, item: Any, where: str) -> dict[str, Any]:
    """A JSON-ready copy of ``item``, or ValueError/TypeError saying what to fix."""
    if not isinstance(item, Mapping):
        raise TypeError(f"{where}: a {kind.singular} must be a dict, got {type(item).__name__}")
    try:
        data: dict[str, Any] = json.loads(json.dumps(item, default=str))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: the {kind.singular} is not JSON-serialisable: {exc}") from None
    for field in _ID_FIELDS:
        value = data.get(field)
        if isinstance(value, int) and not isinstance(value, bool):
            data[field] = str(value)  # ids are strings on the wire
    for field in kind.required:
        value = data.get(field)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}: {field} is required (a non-empty string), got {value!r}")
    for field in _OBJECT_FIELDS:
        if field in data and data[field] is not None and not isinstance(data[field], dict):
            raise TypeError(f"{where}: {field} must be a dict, got {type(data[field]).__name__}")
    if kind.name == "subscriptions":
        status = data.get("status")
        if status is not None and status not in SUBSCRIPTION_STATUSES:
            raise ValueError(
                f"{where}: status must be one of {', '.join(SUBSCRIPTION_STATUSES)}, got {status!r}"
            )
    if kind.name == "actions":
        request = data.get("request")
        if not isinstance(request, dict) or not isinstance(request.get("uri"), str):
            raise ValueError(f"{where}: request.uri is required (the page or URI of the action)")
        request.setdefault("time", iso_time(time.time()))
        data.setdefault("transaction_id", new_transaction_id())
    return data


def validate_many(kind: Kind, items: Iterable[Any], method: str) -> list[dict[str, Any]]:
    if isinstance(items, Mapping) or isinstance(items, str | bytes):
        raise TypeError(f"{method}: expected a list of {kind.name}, got {type(items).__name__}")
    return [validate(kind, item, f"{method}[{index}]") for index, item in enumerate(items)]


def encode(item: dict[str, Any]) -> bytes:
    return json.dumps(item, separators=(",", ":")).encode("ascii")
