"""SQLite storage for the local collector (runs on worker threads, never on the event loop).

Each event is kept as the JSON text it arrived as, next to the columns the read API filters on
and the ones derived at ingest (``_derive``). Writes go through one writer connection, one
transaction per request, on the store's own writer thread (``submit``) or under a lock; readers
get their own connection per thread (WAL mode lets them read while a batch is written). The
schema lives in ``_schema``, the queries in ``_reads`` and ``_summary``, trimming and clearing
in ``_retention``.

Ingest speed decides the indexes: each costs a B-tree insert per event, and one keyed by random
values (the transaction_id) dirties a page per event. So only the dedup key, the dashboard's
two covering indexes (time first, route first), the status (few distinct values, cheap; it
makes stats fast), the rare blocked events and the search index are kept; the other filters
scan. WAL checkpoints (with their fsyncs) run on a background thread instead of inside a
request's commit.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import _reads as reads
from . import _retention
from ._errors import StoreError
from ._opening import connect, open_database
from ._retention import Retention
from ._validate import ActionRow, EventRow

logger = logging.getLogger(__name__)

T = TypeVar("T")
Job = tuple[Callable[[], Any], Callable[[Any, "BaseException | None"], None]]

_CHECKPOINT_SECONDS = 0.5
_TRIM_SECONDS = 60.0  # how often rows that grew too old are looked for
# Bound variables per statement: 32766 since SQLite 3.32, 999 before.
_MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


@dataclass(frozen=True)
class Profile:
    """A profile table: merged by ``key``, with ``columns`` copied out of the merged JSON."""

    table: str
    key: str
    columns: tuple[str, ...] = ()


USERS = Profile("users", "user_id", ("company_id",))
COMPANIES = Profile("companies", "company_id")
SUBSCRIPTIONS = Profile("subscriptions", "subscription_id", ("company_id", "status"))
PROFILES = {p.table: p for p in (USERS, COMPANIES, SUBSCRIPTIONS)}


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge as the spec describes profile updates: objects merge, anything else
    given in ``update`` replaces. Neither argument is modified."""
    merged = dict(base)
    for key, value in update.items():
        old = merged.get(key)
        if type(value) is dict and type(old) is dict:
            merged[key] = merge(old, value)
        else:
            merged[key] = value
    return merged


_dumps = json.JSONEncoder(separators=(",", ":")).encode


class Store:
    """The collector's database at ``path`` (created with its directory when missing)."""

    def __init__(self, path: str | Path, retention: Retention | None = None) -> None:
        self.path = Path(path).expanduser().resolve()
        self.retention = retention or Retention()
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._writer = open_database(self.path)
        # Row counts of the trimmed tables, kept up to date by every write: counting a
        # million rows after each batch would cost more than the batch.
        self._counts = {table: _retention.count(self._writer, table) for table in _retention.TABLES}
        self._trim_pending = False
        self.activity = Activity()
        self._stopping = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="moesif-collector-checkpoint", daemon=True
        )
        self._checkpointer.start()
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._accepting = True
        self._submit_lock = threading.Lock()
        self._writer_thread = threading.Thread(
            target=self._writer_loop, name="moesif-collector-writer", daemon=True
        )
        self._writer_thread.start()
        self._schedule_trim()

    def submit(
        self, fn: Callable[[], T], done: Callable[[T | None, BaseException | None], None]
    ) -> None:
        """Run ``fn`` (a write) on the writer thread, then ``done(result, error)`` there.

        A request thread or the event loop hands its write over and goes on; ``done`` must be
        quick and must not raise (it typically wakes the waiting request).
        """
        with self._submit_lock:
            if not self._accepting:
                raise StoreError("the collector database is closed")
            self._jobs.put((fn, done))

    def _writer_loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, done = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn()
            except BaseException as exc:  # handed to the waiting request, never lost
                error = exc
            try:
                done(result, error)
            except Exception:
                logger.exception("collector write callback failed")

    def _checkpoint_loop(self) -> None:
        conn = connect(self.path)
        rounds_per_trim = round(_TRIM_SECONDS / _CHECKPOINT_SECONDS)
        try:
            rounds = 0
            while not self._stopping.wait(_CHECKPOINT_SECONDS):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # busy or transient: the next round retries
                    logger.debug("collector checkpoint of %s failed: %s", self.path, exc)
                rounds += 1
                if self.retention.max_age is not None and rounds % rounds_per_trim == 0:
                    self._schedule_trim()
        finally:
            conn.close()

    def close(self) -> None:
        """Finish queued writes, checkpoint and close every connection; idempotent."""
        with self._submit_lock:
            if self._accepting:
                self._accepting = False
                self._jobs.put(None)
        self._writer_thread.join()
        self._stopping.set()
        self._checkpointer.join()
        with self._write_lock, self._readers_lock:
            if self._closed:
                return
            self._closed = True
            for conn in self._readers:
                conn.close()
            self._readers.clear()
            try:
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                logger.debug("collector final checkpoint of %s failed: %s", self.path, exc)
            self._writer.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Writes

    def _insert(self, sql: str, width: int, rows: Sequence[tuple[Any, ...]]) -> int:
        """``INSERT ... VALUES`` ``rows`` atomically; returns how many were inserted.

        Rows go in as one multi-row statement (a few for a huge batch) rather than through
        ``executemany``, which retakes the GIL for every row: under load each retake waits for
        the thread parsing the next request, a convoy that stalls both. One statement is one
        stretch of SQLite work without the GIL, and, being atomic on its own, needs no
        BEGIN/COMMIT round trips.
        """
        chunk = max(1, _MAX_VARIABLES // width)
        one = "(" + ", ".join("?" * width) + ")"
        count = 0
        with self._write_lock:
            conn = self._writer
            several = len(rows) > chunk
            if several:
                conn.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(rows), chunk):
                    part = rows[start : start + chunk]
                    values = ", ".join([one] * len(part))
                    params = [value for row in part for value in row]
                    cursor = conn.execute(sql + values, params)
                    # Close the cursor while holding the lock: a cursor freed later resets
                    # the connection's cached statement, which another thread may be running.
                    count += cursor.rowcount
                    cursor.close()
                if several:
                    conn.execute("COMMIT")
            except BaseException:
                if several:
                    conn.execute("ROLLBACK")
                raise
        return count

    def add_events(self, rows: Sequence[EventRow]) -> int:
        """Store events; those whose transaction_id is already stored are skipped. Returns
        how many were new."""
        stored = self._insert(
            "INSERT OR IGNORE INTO events (transaction_id, time, verb, status, path, user_id, "
            "company_id, blocked_by, direction, received_at, data, route, duration, weight, "
            "search) VALUES ",
            15,
            rows,
        )
        if rows:
            last = rows[-1]
            self.activity.note(stored, last[3], last[2], last[11])
        self._inserted("events", stored)
        return stored

    def add_actions(self, rows: Sequence[ActionRow]) -> int:
        stored = self._insert(
            "INSERT OR IGNORE INTO actions (transaction_id, time, action_name, user_id, "
            "company_id, received_at, data) VALUES ",
            7,
            rows,
        )
        self._inserted("actions", stored)
        return stored

    # Retention

    def _inserted(self, table: str, count: int) -> None:
        limit = self.retention.max_events
        with self._write_lock:
            self._counts[table] += count
            over = 0 if limit is None else self._counts[table] - limit
        if over > self.retention.slack():
            self._schedule_trim()

    def _schedule_trim(self) -> None:
        with self._write_lock:
            if self._trim_pending:
                return
            self._trim_pending = True
        try:
            self.submit(self._trim, self._trimmed)
        except StoreError:  # closing: the next start trims
            pass

    def _trim(self) -> bool:
        with self._write_lock:
            return _retention.trim(self._writer, self._counts, self.retention)

    def _trimmed(self, more: bool | None, error: BaseException | None) -> None:
        with self._write_lock:
            self._trim_pending = False
        if error is not None:
            logger.warning("collector could not trim %s: %s", self.path, error)
        elif more:
            self._schedule_trim()  # behind the writes queued meanwhile

    def clear(self) -> dict[str, int]:
        """Delete everything stored; counts of what went, by table."""
        with self._write_lock:
            deleted = _retention.clear(self._writer)
            self._counts = dict.fromkeys(_retention.TABLES, 0)
        return deleted

    def vacuum(self) -> None:
        """Give the space of deleted rows back to the file system (slow on a big database)."""
        with self._write_lock:
            self._writer.execute("VACUUM")

    def merge_profiles(self, profile: Profile, items: Sequence[dict[str, Any]], now: int) -> int:
        """Create or recursively merge each item into the stored profile with the same key,
        in order (two updates of one id in a batch both apply). Returns the number of items."""
        if not items:
            return 0
        names = (profile.key, *profile.columns, "created_at", "received_at", "data")
        updates = ", ".join(f"{n} = excluded.{n}" for n in names if n not in ("created_at",))
        sql = (
            f"INSERT INTO {profile.table} ({', '.join(names)}) "
            f"VALUES ({', '.join('?' * len(names))}) "
            f"ON CONFLICT ({profile.key}) DO UPDATE SET {updates}"
        )
        select = f"SELECT data FROM {profile.table} WHERE {profile.key} = ?"
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                merged: dict[str, dict[str, Any]] = {}
                for item in items:
                    key = item[profile.key]
                    base = merged.get(key)
                    if base is None:
                        row = conn.execute(select, (key,)).fetchone()
                        base = json.loads(row[0]) if row is not None else None
                    merged[key] = item if base is None else merge(base, item)
                rows = []
                for key, value in merged.items():
                    columns = [_column(value.get(c)) for c in profile.columns]
                    rows.append((key, *columns, now, now, _dumps(value)))
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return len(items)

    # Reads

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._readers_lock:
                if self._closed:
                    raise StoreError("the collector database is closed")
                conn = connect(self.path)
                conn.execute("PRAGMA query_only=1")
                conn.create_function("regexp", 2, reads.regexp, deterministic=True)
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def read(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` on this thread's reader connection (``_reads``)."""
        return fn(self._reader(), *args)

    def stats(self) -> dict[str, Any]:
        return self.read(reads.stats)


class Activity:
    """What arrived since the store opened, for the command line's progress line. Written
    by the writer thread, read by another: each field is replaced, never mutated."""

    def __init__(self) -> None:
        self.stored = 0
        self.last: tuple[int | None, str, str] | None = None  # status, verb, route

    def note(self, stored: int, status: int | None, verb: str, route: str) -> None:
        self.stored += stored
        self.last = (status, verb, route)


def _column(value: Any) -> str | None:
    return value if type(value) is str else None
