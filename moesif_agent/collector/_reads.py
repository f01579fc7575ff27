"""The read API's queries, each a function of a reader connection (``Store.read``)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class Page:
    """One page of a list: the items as JSON texts (store fields added) and the next cursor."""

    items: list[str]
    next_key: tuple[int, ...] | None


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def regexp(pattern: str, value: str | None) -> bool:
    # SQLite evaluates "value REGEXP pattern" as regexp(pattern, value).
    return value is not None and _compiled(pattern).search(value) is not None


def page(
    conn: sqlite3.Connection,
    table: str,
    order: tuple[str, ...],
    where: Sequence[str],
    params: Sequence[Any],
    after: tuple[int, ...] | None,
    limit: int,
    extra: str,
) -> Page:
    """Rows of ``table`` newest first by ``order`` (descending), after cursor ``after``.

    ``extra`` is a SQL expression producing the JSON text of the store fields to add to
    each item (``,"_id":1,...``).
    """
    clauses = list(where)
    args = list(params)
    if after is not None:
        clauses.append(f"({', '.join(order)}) < ({', '.join('?' * len(order))})")
        args.extend(after)
    sql = f"SELECT {', '.join(order)}, data, {extra} FROM {table}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY " + ", ".join(f"{c} DESC" for c in order) + " LIMIT ?"
    args.append(limit + 1)
    rows = conn.execute(sql, args).fetchall()
    width = len(order)
    items = [_with_fields(row[width], row[width + 1]) for row in rows[:limit]]
    next_key = tuple(rows[limit - 1][:width]) if len(rows) > limit else None
    return Page(items, next_key)


def get(conn: sqlite3.Connection, table: str, column: str, value: Any, extra: str) -> str | None:
    row = conn.execute(f"SELECT data, {extra} FROM {table} WHERE {column} = ?", (value,)).fetchone()
    return None if row is None else _with_fields(row[0], row[1])


def stats(conn: sqlite3.Connection) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    conn.execute("BEGIN")  # one snapshot for all counts
    try:
        for table in ("events", "actions", "users", "companies", "subscriptions"):
            counts[table] = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        by_status: dict[str, int] = {}
        for group, count in conn.execute(
            "SELECT CASE WHEN status IS NULL THEN 'no_response' "
            "WHEN status BETWEEN 100 AND 599 THEN (status / 100) || 'xx' "
            "ELSE 'other' END AS grp, COUNT(*) FROM events GROUP BY grp ORDER BY grp"
        ):
            by_status[group] = count
        counts["events_by_status"] = by_status
        counts["blocked"] = conn.execute(
            "SELECT COUNT(*) FROM events WHERE blocked_by IS NOT NULL"
        ).fetchone()[0]
    finally:
        conn.execute("COMMIT")
    return counts


def _with_fields(data: str, fields: str) -> str:
    # Stored items are JSON objects ("{...}"), never empty: splice the store's fields in
    # rather than parsing and re-encoding every item of a page.
    return data[:-1] + fields + "}"
