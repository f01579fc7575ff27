"""Helpers shared by the local collector tests."""

from __future__ import annotations

import gzip
import itertools
import json
import uuid
from pathlib import Path
from typing import Any

import httpx

DATA = Path(__file__).parent / "data"
APP_ID = "test-app"
_counter = itertools.count(1)


def post(
    client: httpx.Client, path: str, payload: Any, *, compress: bool = False
) -> httpx.Response:
    """POST ``payload`` as JSON (gzip-compressed when ``compress``)."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if compress:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return client.post(path, content=body, headers=headers)


def make_event(**overrides: Any) -> dict[str, Any]:
    """A small valid event with its own transaction_id; ``overrides`` replace top-level keys."""
    n = next(_counter)
    event: dict[str, Any] = {
        "request": {
            "time": "2024-02-06T04:45:42.914Z",
            "uri": f"https://api.example.com/items/{n}?page=1",
            "verb": "GET",
            "ip_address": "10.0.0.1",
            "headers": {"Host": "api.example.com", "Accept": "application/json"},
        },
        "response": {
            "time": "2024-02-06T04:45:42.950Z",
            "status": 200,
            "headers": {"Content-Type": "application/json"},
            "body": {"id": n},
            "transfer_encoding": "json",
        },
        "transaction_id": str(uuid.uuid4()),
        "direction": "Incoming",
    }
    event.update(overrides)
    return event


def without_store_fields(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` as it was sent: the fields the collector adds removed."""
    return {k: v for k, v in item.items() if k not in ("_id", "_received_at", "_created_at")}
