"""The collector's SQLite schema and its versions (``PRAGMA user_version``).

A new version appends its steps to ``_MIGRATIONS``; a database written by a newer
collector is refused rather than misread.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from ._derive import route_of, search_text
from ._errors import StoreError
from ._timefmt import parse_iso
from ._validate import MAX_WEIGHT, uri_path

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 3

_SCHEMA_V1 = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    transaction_id TEXT,
    time INTEGER NOT NULL,
    verb TEXT NOT NULL,
    status INTEGER,
    path TEXT NOT NULL,
    user_id TEXT,
    company_id TEXT,
    blocked_by TEXT,
    direction TEXT,
    received_at INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX events_transaction_id ON events (transaction_id)
    WHERE transaction_id IS NOT NULL;
CREATE INDEX events_time ON events (time);
CREATE INDEX events_status ON events (status);
CREATE INDEX events_blocked ON events (blocked_by) WHERE blocked_by IS NOT NULL;

CREATE TABLE actions (
    id INTEGER PRIMARY KEY,
    transaction_id TEXT,
    time INTEGER NOT NULL,
    action_name TEXT NOT NULL,
    user_id TEXT,
    company_id TEXT,
    received_at INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX actions_transaction_id ON actions (transaction_id)
    WHERE transaction_id IS NOT NULL;
CREATE INDEX actions_time ON actions (time);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL UNIQUE,
    company_id TEXT,
    created_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE companies (
    id INTEGER PRIMARY KEY,
    company_id TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY,
    subscription_id TEXT NOT NULL UNIQUE,
    company_id TEXT,
    status TEXT,
    created_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    data TEXT NOT NULL
);
"""

# Version 2: the dashboard. Each event's route template, duration (microseconds) and weight
# become columns, covered by two indexes that hold every column the endpoint summary and the
# time series read, so both scan an index and never the events themselves. events_time keeps
# time first (the list's order). Full-text search is an FTS5 index over events.search (the
# URI, headers and bodies as text); a trigger indexes each new event, and the store deletes
# index entries itself before it deletes events (a delete trigger would re-tokenise every
# event when all data is cleared).
_V2_COLUMNS = """
ALTER TABLE events ADD COLUMN route TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN duration INTEGER;
ALTER TABLE events ADD COLUMN weight INTEGER NOT NULL DEFAULT 1;
ALTER TABLE events ADD COLUMN search TEXT NOT NULL DEFAULT '';
"""
_V2_INDEXES = """
DROP INDEX events_time;
CREATE INDEX events_time ON events (time, status, duration, weight);
CREATE INDEX events_endpoint ON events (route, verb, duration, weight, status, time);
CREATE VIRTUAL TABLE events_fts USING fts5(
    search, content='events', content_rowid='id', columnsize=0
);
CREATE TRIGGER events_fts_insert AFTER INSERT ON events BEGIN
    INSERT INTO events_fts (rowid, search) VALUES (new.id, new.search);
END;
INSERT INTO events_fts (events_fts) VALUES ('rebuild');
"""


# Version 3: ids are never given twice. A permalink (#events/<id>) names one event for good;
# with plain rowids, clearing the data made ids start again at 1, so an old link opened
# another event. AUTOINCREMENT keeps the highest id ever given (in sqlite_sequence) across
# deletes and VACUUM. SQLite cannot add it to a table, so events and actions are rebuilt
# with the same ids (the search index points at them), then their indexes and trigger.
# Weights are capped as ingest now caps them (MAX_WEIGHT), so that the sums cannot overflow.
_V3_REBUILD = """
CREATE TABLE events_v3 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id TEXT,
    time INTEGER NOT NULL,
    verb TEXT NOT NULL,
    status INTEGER,
    path TEXT NOT NULL,
    user_id TEXT,
    company_id TEXT,
    blocked_by TEXT,
    direction TEXT,
    received_at INTEGER NOT NULL,
    data TEXT NOT NULL,
    route TEXT NOT NULL DEFAULT '',
    duration INTEGER,
    weight INTEGER NOT NULL DEFAULT 1,
    search TEXT NOT NULL DEFAULT ''
);
INSERT INTO events_v3 (id, transaction_id, time, verb, status, path, user_id, company_id,
    blocked_by, direction, received_at, data, route, duration, weight, search)
SELECT id, transaction_id, time, verb, status, path, user_id, company_id,
    blocked_by, direction, received_at, data, route, duration, MIN(weight, 2147483647), search
FROM events;
DROP TABLE events;
ALTER TABLE events_v3 RENAME TO events;
CREATE UNIQUE INDEX events_transaction_id ON events (transaction_id)
    WHERE transaction_id IS NOT NULL;
CREATE INDEX events_time ON events (time, status, duration, weight);
CREATE INDEX events_status ON events (status);
CREATE INDEX events_blocked ON events (blocked_by) WHERE blocked_by IS NOT NULL;
CREATE INDEX events_endpoint ON events (route, verb, duration, weight, status, time);
CREATE TRIGGER events_fts_insert AFTER INSERT ON events BEGIN
    INSERT INTO events_fts (rowid, search) VALUES (new.id, new.search);
END;

CREATE TABLE actions_v3 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id TEXT,
    time INTEGER NOT NULL,
    action_name TEXT NOT NULL,
    user_id TEXT,
    company_id TEXT,
    received_at INTEGER NOT NULL,
    data TEXT NOT NULL
);
INSERT INTO actions_v3 (id, transaction_id, time, action_name, user_id, company_id,
    received_at, data)
SELECT id, transaction_id, time, action_name, user_id, company_id, received_at, data
FROM actions;
DROP TABLE actions;
ALTER TABLE actions_v3 RENAME TO actions;
CREATE UNIQUE INDEX actions_transaction_id ON actions (transaction_id)
    WHERE transaction_id IS NOT NULL;
CREATE INDEX actions_time ON actions (time);
"""


def _derive_v2(conn: sqlite3.Connection) -> None:
    """Fill the version 2 columns of events stored by version 1."""
    rows = conn.execute("SELECT id, data FROM events").fetchall()
    updates = []
    for event_id, data in rows:
        event = json.loads(data)
        request, response = event["request"], event.get("response")
        duration = None
        if response is not None:
            end, start = parse_iso(response["time"]), parse_iso(request["time"])
            duration = None if end is None or start is None else end - start
        route = route_of(uri_path(request["uri"]), event.get("metadata"))
        text = search_text(request["uri"], request, response)
        # Version 1 took any non-negative weight; the sums need them bounded as ingest does.
        weight = min(event.get("weight", 1), MAX_WEIGHT)
        updates.append((route, duration, weight, text, event_id))
    conn.executemany(
        "UPDATE events SET route = ?, duration = ?, weight = ?, search = ? WHERE id = ?", updates
    )


Step = str | Callable[[sqlite3.Connection], None]
_MIGRATIONS: dict[int, list[Step]] = {
    1: [_SCHEMA_V1],
    2: [_V2_COLUMNS, _derive_v2, _V2_INDEXES],
    3: [_V3_REBUILD],
}
_OUR_TABLES = frozenset({"events", "actions", "users", "companies", "subscriptions"})


def _statements(script: str) -> list[str]:
    """``script`` cut into statements (a trigger's body holds semicolons of its own)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the database on ``conn`` to ``SCHEMA_VERSION``, refusing what is not ours."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer moesif-agent collector (schema version "
            f"{version}; this one knows up to {SCHEMA_VERSION}); upgrade moesif-agent or "
            "use another --db"
        )
    if version == 0:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        foreign = tables - _OUR_TABLES
        if foreign:
            raise StoreError(
                f"{path} is not a moesif-agent collector database (it has tables "
                f"{', '.join(sorted(foreign)[:5])}); use another --db"
            )
    if version == SCHEMA_VERSION:
        return
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    try:
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for step in _MIGRATIONS[target]:
                if isinstance(step, str):
                    for statement in _statements(step):
                        conn.execute(statement)
                else:
                    step(conn)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if version:  # an upgrade rewrites tables: on a big database the start takes a while
        logger.info(
            "collector database %s upgraded from schema version %d to %d in %.1f s",
            path,
            version,
            SCHEMA_VERSION,
            time.perf_counter() - started,
        )
