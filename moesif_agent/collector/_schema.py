"""The collector's SQLite schema and its versions (``PRAGMA user_version``).

A new version appends its statements to ``_MIGRATIONS``; a database written by a newer
collector is refused rather than misread.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from ._errors import StoreError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

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

_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1}
_OUR_TABLES = frozenset({"events", "actions", "users", "companies", "subscriptions"})


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
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    logger.debug("collector database %s at schema version %d", path, SCHEMA_VERSION)
