"""Helpers shared by the local collector tests."""

from __future__ import annotations

import gzip
import itertools
import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from moesif_agent.collector._schema import _SCHEMA_V1
from moesif_agent.collector._validate import uri_path

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


def version_1_database(path: Path, events: Sequence[tuple[int | None, dict[str, Any]]]) -> None:
    """A database as a version 1 collector left it, holding ``events``: (id, event) pairs,
    an id of None letting SQLite choose. They arrived now (retention keeps them)."""
    now = time.time_ns() // 1000
    rows = [
        (
            event_id,
            event["transaction_id"],
            event["request"]["verb"],
            event.get("response", {}).get("status"),
            uri_path(event["request"]["uri"]),
            now,
            json.dumps(event),
        )
        for event_id, event in events
    ]
    with sqlite3.connect(path) as conn:
        conn.executescript(_SCHEMA_V1)
        conn.executemany(
            "INSERT INTO events (id, transaction_id, time, verb, status, path, received_at, "
            "data) VALUES (?, ?, 0, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("PRAGMA user_version = 1")
    conn.close()
