"""The dashboard's summaries of stored events: per endpoint, over time, per person.

Each is one grouped query over columns derived at ingest. ``events_endpoint`` (route, verb,
duration, weight, status, time) and ``events_time`` (time, status, duration, weight) cover
every column the first two read, so without filters on other columns SQLite scans an index,
never the events, and groups durations into a histogram in C; Python then walks a few
thousand (duration, weight) pairs per query. Percentiles are exact: the durations come from
millisecond wire times, so a histogram keyed by duration loses nothing.

Counts are weighted: an event with ``weight`` 10 stands for ten calls the agent sampled out.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from ._errors import ClientError
from ._timefmt import format_iso

# Chart intervals, seconds: the smallest that gives at most MAX_BUCKETS buckets is used.
_DAY = 86400
INTERVALS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 10800, 21600, _DAY, 7 * _DAY)
MAX_BUCKETS = 120
MAX_INTERVAL = 366 * _DAY  # the widest interval that can be asked for: a year
MAX_REQUESTED_BUCKETS = 5000
MAX_PEOPLE = 1000
PEOPLE = {"users": ("user_id", "users"), "companies": ("company_id", "companies")}
_CLASSES = {2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx", 0: "other"}


def _where(where: Sequence[str]) -> str:
    return " WHERE " + " AND ".join(where) if where else ""


def percentiles(
    histogram: Iterable[tuple[int, int]], total: int, ranks: Sequence[int]
) -> list[float | None]:
    """Weighted nearest-rank percentiles of ``histogram`` ((duration, weight) by duration):
    for each p in ``ranks``, the smallest duration whose cumulative weight reaches p% of
    ``total``, in ms; None when nothing has a duration."""
    found: list[float | None] = [None] * len(ranks)
    if total <= 0:
        return found
    cumulative, index = 0, 0
    for duration, weight in histogram:
        cumulative += weight
        while index < len(ranks) and cumulative * 100 >= total * ranks[index]:
            found[index] = duration / 1000
            index += 1
        if index == len(ranks):
            break
    return found


def endpoints(
    conn: sqlite3.Connection, where: Sequence[str], params: Sequence[Any]
) -> dict[str, Any]:
    """One item per method and route template: calls, error counts and rates, p50/p95/p99
    latency and when it was last called; busiest first."""
    rows = conn.execute(
        "SELECT route, verb, duration, SUM(weight), COUNT(*), "
        "SUM(CASE WHEN status BETWEEN 400 AND 499 THEN weight ELSE 0 END), "
        "SUM(CASE WHEN status BETWEEN 500 AND 599 THEN weight ELSE 0 END), MAX(time) "
        f"FROM events{_where(where)} GROUP BY route, verb, duration "
        "ORDER BY route, verb, duration",
        params,
    )
    items: list[dict[str, Any]] = []
    key = None
    histogram: list[tuple[int, int]] = []
    current: dict[str, Any] = {}

    def finish() -> None:
        timed = sum(weight for _, weight in histogram)
        p50, p95, p99 = percentiles(histogram, timed, (50, 95, 99))
        calls = current["calls"]
        current.update(
            error_rate_4xx=current["errors_4xx"] / calls if calls else 0.0,
            error_rate_5xx=current["errors_5xx"] / calls if calls else 0.0,
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
            last_seen=format_iso(current["last_seen"]),
        )
        items.append(current)

    for route, verb, duration, calls, count, errors_4xx, errors_5xx, last in rows:
        if (route, verb) != key:
            if key is not None:
                finish()
            key, histogram = (route, verb), []
            current = dict.fromkeys(("calls", "events", "errors_4xx", "errors_5xx"), 0)
            current.update(verb=verb, route=route, last_seen=last)
        current["calls"] += calls
        current["events"] += count
        current["errors_4xx"] += errors_4xx
        current["errors_5xx"] += errors_5xx
        current["last_seen"] = max(current["last_seen"], last)
        if duration is not None:
            histogram.append((duration, calls))
    if key is not None:
        finish()
    items.sort(key=lambda item: (-item["calls"], item["route"], item["verb"]))
    return {"items": items, "calls": sum(item["calls"] for item in items)}


def pick_interval(span: int, requested: int | None) -> int:
    """The bucket width in seconds for ``span`` microseconds."""
    if requested is not None:
        return requested
    for seconds in INTERVALS:
        if span <= seconds * 1_000_000 * MAX_BUCKETS:
            return seconds
    return INTERVALS[-1]


def _interval_rows(
    conn: sqlite3.Connection,
    where: Sequence[str],
    params: Sequence[Any],
    origin: int,
    step: int,
    count: int,
    bounds: tuple[int, int],
) -> list[list[tuple[int, int | None, int, int]]]:
    """For each interval, (status class, duration, calls, events) of its events in ``bounds``.

    SQLite groups by sorting, and sorting the index one interval at a time is about twice as
    fast as sorting all of it at once: one query per interval, unless a search is among the
    filters (each query would run the search again).
    """
    group = "CASE WHEN status BETWEEN 200 AND 599 THEN status / 100 ELSE 0 END, duration"
    condition = _where([*where, "time >= ?", "time < ?"])
    if not any("events_fts" in clause for clause in where):
        sql = f"SELECT {group}, SUM(weight), COUNT(*) FROM events{condition} GROUP BY 1, 2"
        slices = []
        for index in range(count):
            begin = origin + index * step
            limits = [max(begin, bounds[0]), min(begin + step, bounds[1])]
            slices.append(conn.execute(sql, [*params, *limits]).fetchall())
        return slices
    slices = [[] for _ in range(count)]
    for index, *row in conn.execute(
        f"SELECT (time - ?) / ?, {group}, SUM(weight), COUNT(*) FROM events{condition} "
        "GROUP BY 1, 2, 3",
        [origin, step, *params, *bounds],
    ):
        slices[index].append(tuple(row))
    return slices


def timeseries(
    conn: sqlite3.Connection,
    where: Sequence[str],
    params: Sequence[Any],
    start: int | None,
    end: int | None,
    interval: int | None,
) -> dict[str, Any]:
    """Calls per interval by status class, with p50/p95 latency, from ``start`` to ``end``
    (microseconds; the matching events' first and last times when not given)."""
    if start is None or end is None:
        first, last = conn.execute(
            f"SELECT MIN(time), MAX(time) FROM events{_where(where)}", params
        ).fetchone()
        if first is None:
            return {"start": None, "end": None, "interval_seconds": interval, "calls": 0,
                    "events": 0, "buckets": []}  # fmt: skip
        start = first if start is None else start
        end = last + 1 if end is None else end
    step = pick_interval(max(1, end - start), interval) * 1_000_000
    origin = start // step * step  # buckets start at round times (UTC)
    count = max(1, -(-(end - origin) // step))
    if count > MAX_REQUESTED_BUCKETS:
        raise ClientError(
            400,
            f"bad filter interval: {count} intervals of {step // 1_000_000} s; give a larger "
            f"interval or a shorter time range (at most {MAX_REQUESTED_BUCKETS} intervals)",
            field="interval",
        )
    buckets: list[dict[str, Any]] = []
    events = 0
    slices = _interval_rows(conn, where, params, origin, step, count, (start, end))
    for n, rows in enumerate(slices):
        counts = dict.fromkeys(_CLASSES.values(), 0)
        histogram: dict[int, int] = {}
        for status_class, duration, calls, number in rows:
            counts[_CLASSES[status_class]] += calls
            events += number
            if duration is not None:
                histogram[duration] = histogram.get(duration, 0) + calls
        timed = sum(histogram.values())
        p50, p95 = percentiles(sorted(histogram.items()), timed, (50, 95))
        begin = format_iso(origin + n * step)
        calls = sum(counts.values())
        buckets.append({"start": begin, "calls": calls, **counts, "p50_ms": p50, "p95_ms": p95})
    return {
        "start": format_iso(origin),
        "end": format_iso(origin + count * step),
        "interval_seconds": step // 1_000_000,
        "calls": sum(bucket["calls"] for bucket in buckets),
        "events": events,
        "buckets": buckets,
    }


def people(
    conn: sqlite3.Connection, kind: str, where: Sequence[str], params: Sequence[Any]
) -> dict[str, Any]:
    """The users (or companies) seen in events: calls, errors (4xx and 5xx), last seen and
    their profile when one was sent. Without filters, profiles that made no call yet are
    listed too (with 0 calls)."""
    column, table = PEOPLE[kind]
    rows = conn.execute(
        f"SELECT s.id, s.calls, s.events, s.errors, s.last, p.data FROM ("
        f"SELECT {column} AS id, SUM(weight) AS calls, COUNT(*) AS events, "
        "SUM(CASE WHEN status >= 400 THEN weight ELSE 0 END) AS errors, MAX(time) AS last "
        f"FROM events{_where([*where, f'{column} IS NOT NULL'])} GROUP BY {column}"
        f") AS s LEFT JOIN {table} AS p ON p.{column} = s.id",
        params,
    ).fetchall()
    if not where:
        seen = {row[0] for row in rows}
        for key, data in conn.execute(f"SELECT {column}, data FROM {table}"):
            if key not in seen:
                rows.append((key, 0, 0, 0, None, data))
    rows.sort(key=lambda row: (-row[1], -(row[4] or 0), row[0]))
    items = [
        {
            "id": key,
            "calls": calls,
            "events": events,
            "errors": errors,
            "last_seen": None if last is None else format_iso(last),
            "profile": None if data is None else json.loads(data),
        }
        for key, calls, events, errors, last, data in rows[:MAX_PEOPLE]
    ]
    return {"kind": kind, "items": items, "total": len(rows)}
