"""SQLite storage for the local collector (runs on worker threads, never on the event loop).

Each event is kept as the JSON text it arrived as, next to the columns the read API filters on.
Writes go through one writer connection, one transaction per request, on the store's own writer
thread (``submit``) or under a lock; readers get their own connection per thread (WAL mode lets
them read while a batch is written). The schema lives in ``_schema``.

Ingest speed decides the indexes: each costs a B-tree insert per event, and one keyed by random
values (the transaction_id) dirties a page per event. So only the dedup key, the time order,
the status (few distinct values, cheap; it makes stats fast) and the rare blocked events are
indexed; the other filters scan. WAL checkpoints (with their fsyncs) run on a background thread
instead of inside a request's commit.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from ._errors import StoreError
from ._schema import migrate
from ._validate import ActionRow, EventRow

logger = logging.getLogger(__name__)

T = TypeVar("T")
Job = tuple[Callable[[], Any], Callable[[Any, "BaseException | None"], None]]

_CHECKPOINT_SECONDS = 0.5
_WAL_SIZE_LIMIT = 64 * 1024 * 1024
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


@dataclass(frozen=True)
class Page:
    """One page of a list: the items as JSON texts (store fields added) and the next cursor."""

    items: list[str]
    next_key: tuple[int, ...] | None


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


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: str, value: str | None) -> bool:
    # SQLite evaluates "value REGEXP pattern" as regexp(pattern, value).
    return value is not None and _compiled(pattern).search(value) is not None


class Store:
    """The collector's database at ``path`` (created with its directory when missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        try:
            self._writer = self._connect()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the collector database {self.path}: {exc}") from None
        try:
            self._writer.execute("PRAGMA journal_mode=WAL")
            self._writer.execute("PRAGMA synchronous=NORMAL")
            self._writer.execute("PRAGMA wal_autocheckpoint=0")
            self._writer.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
            migrate(self._writer, self.path)
        except sqlite3.DatabaseError as exc:
            self._writer.close()
            raise StoreError(
                f"{self.path} is not a usable SQLite database ({exc}); "
                "point --db at a new file or a collector database"
            ) from None
        except StoreError:
            self._writer.close()
            raise
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
        conn = self._connect()
        try:
            while not self._stopping.wait(_CHECKPOINT_SECONDS):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:  # busy or transient: the next round retries
                    logger.debug("collector checkpoint of %s failed: %s", self.path, exc)
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

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
        return self._insert(
            "INSERT OR IGNORE INTO events (transaction_id, time, verb, status, path, user_id, "
            "company_id, blocked_by, direction, received_at, data) VALUES ",
            11,
            rows,
        )

    def add_actions(self, rows: Sequence[ActionRow]) -> int:
        return self._insert(
            "INSERT OR IGNORE INTO actions (transaction_id, time, action_name, user_id, "
            "company_id, received_at, data) VALUES ",
            7,
            rows,
        )

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
                conn = self._connect()
                conn.execute("PRAGMA query_only=1")
                conn.create_function("regexp", 2, _regexp, deterministic=True)
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def page(
        self,
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
        rows = self._reader().execute(sql, args).fetchall()
        width = len(order)
        items = [_with_fields(row[width], row[width + 1]) for row in rows[:limit]]
        next_key = tuple(rows[limit - 1][:width]) if len(rows) > limit else None
        return Page(items, next_key)

    def get(self, table: str, column: str, value: Any, extra: str) -> str | None:
        row = (
            self._reader()
            .execute(f"SELECT data, {extra} FROM {table} WHERE {column} = ?", (value,))
            .fetchone()
        )
        return None if row is None else _with_fields(row[0], row[1])

    def stats(self) -> dict[str, Any]:
        conn = self._reader()
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


def _column(value: Any) -> str | None:
    return value if type(value) is str else None


def _with_fields(data: str, fields: str) -> str:
    # Stored items are JSON objects ("{...}"), never empty: splice the store's fields in
    # rather than parsing and re-encoding every item of a page.
    return data[:-1] + fields + "}"
