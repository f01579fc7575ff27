"""Keeping the collector's database bounded, and emptying it.

A collector left running for weeks must not fill the disk: events and actions beyond
``max_events`` (the oldest first) or older than ``max_age`` (by arrival) are deleted. Deletes
run on the store's writer thread in chunks, each its own transaction, so an ingest request
waits for one chunk at most rather than for the whole backlog.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass

# About 1-2 GB of SQLite for typical ~1 KB events with their search index; a local tool
# should not need more.
DEFAULT_MAX_EVENTS = 1_000_000
DEFAULT_MAX_AGE = 30 * 86400.0
CHUNK = 5000
# Trimmed tables: both have rows in arrival order (id) and a received_at column.
TABLES = ("events", "actions")
ALL_TABLES = ("events", "actions", "users", "companies", "subscriptions")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_OFF = frozenset({"0", "off", "none", "never"})


@dataclass(frozen=True)
class Retention:
    """How much the store keeps: ``max_events`` rows per table (events, actions) and rows
    that arrived at most ``max_age`` seconds ago; None keeps everything."""

    max_events: int | None = DEFAULT_MAX_EVENTS
    max_age: float | None = DEFAULT_MAX_AGE

    def __post_init__(self) -> None:
        if self.max_events is not None and self.max_events < 1:
            raise ValueError(f"max_events must be at least 1 (or None), not {self.max_events}")
        if self.max_age is not None and self.max_age <= 0:
            raise ValueError(f"max_age must be positive seconds (or None), not {self.max_age}")

    def slack(self) -> int:
        """Rows allowed over ``max_events`` before a trim, so trims come in chunks, not one
        delete per insert."""
        return 0 if self.max_events is None else min(CHUNK, max(100, self.max_events // 100))


def parse_duration(text: str) -> float | None:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` -> seconds; ``"0"``/``"off"`` ->
    None (no limit). Raises ValueError with what to write."""
    value = text.strip().lower()
    if value in _OFF:
        return None
    found = _DURATION.fullmatch(value)
    if found is None or float(found.group(1)) <= 0:
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit (s, m, h, d, w), "
            "e.g. 30d or 12h, or 'off'"
        )
    return float(found.group(1)) * _UNITS[found.group(2)]


def format_duration(seconds: float) -> str:
    """The largest unit that divides ``seconds``: 2592000 -> ``30d``, 43200 -> ``12h``."""
    for unit, size in sorted(_UNITS.items(), key=lambda pair: -pair[1]):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def count(conn: sqlite3.Connection, table: str) -> int:
    result: int = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    return result


def first_young(conn: sqlite3.Connection, table: str, since: int) -> int | None:
    """The id of the oldest row that arrived at ``since`` (microseconds) or later; rows
    before it are too old. Ids follow arrival order, so the scan stops at the first young
    row."""
    row = conn.execute(
        f"SELECT id FROM {table} WHERE received_at >= ? ORDER BY id LIMIT 1", (since,)
    ).fetchone()
    if row is not None:
        return int(row[0])
    last = conn.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0]
    return None if last is None else int(last) + 1


def nth_id(conn: sqlite3.Connection, table: str, n: int) -> int | None:
    """The id of the ``n``-th oldest row (0-based), or None when there are not that many."""
    row = conn.execute(f"SELECT id FROM {table} ORDER BY id LIMIT 1 OFFSET ?", (n,)).fetchone()
    return None if row is None else int(row[0])


def delete_before(conn: sqlite3.Connection, table: str, upto: int) -> int:
    """Delete up to ``CHUNK`` of the rows of ``table`` with ids below ``upto``, oldest first,
    in one transaction; returns how many went."""
    bound = nth_id(conn, table, CHUNK)
    if bound is None or bound > upto:
        bound = upto
    conn.execute("BEGIN IMMEDIATE")
    try:
        if table == "events":
            # An external-content FTS5 index forgets a row only when told its indexed text.
            conn.execute(
                "INSERT INTO events_fts (events_fts, rowid, search) "
                "SELECT 'delete', id, search FROM events WHERE id < ?",
                (bound,),
            )
        deleted: int = conn.execute(f"DELETE FROM {table} WHERE id < ?", (bound,)).rowcount
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return deleted


def trim(conn: sqlite3.Connection, counts: dict[str, int], limits: Retention) -> bool:
    """Delete one chunk of what ``limits`` exclude from each table (``counts``: their row
    counts, updated); True when more is left to delete."""
    more = False
    since = time.time_ns() // 1000 - int((limits.max_age or 0) * 1e6)
    for table in TABLES:
        upto = None
        if limits.max_events is not None and counts[table] > limits.max_events:
            upto = nth_id(conn, table, counts[table] - limits.max_events)
        if limits.max_age is not None:
            young = first_young(conn, table, since)
            if young is not None and (upto is None or young > upto):
                upto = young
        if upto is not None:
            deleted = delete_before(conn, table, upto)
            counts[table] -= deleted
            more = more or deleted >= CHUNK
    return more


def clear(conn: sqlite3.Connection) -> dict[str, int]:
    """Delete everything the collector stored, in one transaction; counts by table."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        deleted = {table: conn.execute(f"DELETE FROM {table}").rowcount for table in ALL_TABLES}
        conn.execute("INSERT INTO events_fts (events_fts) VALUES ('delete-all')")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return deleted
