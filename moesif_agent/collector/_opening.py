"""Opening the collector's database: created when missing, checked before anything is served.

Every way it can fail is found here, at startup, with a message that says what to do: a
database that is read-only (or in a read-only directory) would otherwise be discovered by the
first agent batch, and every batch after it would get a 503. A start that fails leaves no
empty database file (or directory) behind.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ._errors import StoreError
from ._schema import SCHEMA_VERSION, migrate

_WAL_SIZE_LIMIT = 64 * 1024 * 1024
_UNWRITABLE = ("readonly", "read-only", "unable to open", "disk i/o error", "permission")


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _unwritable(path: Path, exc: BaseException) -> StoreError:
    return StoreError(
        f"cannot write to the collector database {path} ({exc}); make the file and its "
        f"directory {path.parent} writable for this user, or point --db at another path"
    )


def _missing_parents(path: Path) -> list[Path]:
    """The directories above ``path`` that do not exist yet, deepest first."""
    missing = []
    for parent in path.parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing


def _remove_dirs(directories: list[Path]) -> None:
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            break  # not empty: something else lives there now


def _remove(path: Path, directories: list[Path]) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    _remove_dirs(directories)


def _check_fts5() -> None:
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    except sqlite3.OperationalError:
        raise StoreError(
            f"this Python's SQLite ({sqlite3.sqlite_version}) was built without FTS5, which "
            "the collector's search needs; use a Python whose sqlite3 module has it (the "
            "python.org and distribution builds do)"
        ) from None
    finally:
        probe.close()


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
        migrate(conn, path)
        # An up-to-date database may be read-only and still answer every read: one real
        # write (the header's user_version, set to what it is) finds out now.
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if any(word in str(exc).lower() for word in _UNWRITABLE):
            raise _unwritable(path, exc) from None
        raise StoreError(
            f"{path} is not a usable SQLite database ({exc}); "
            "point --db at a new file or a collector database"
        ) from None


def open_database(path: Path) -> sqlite3.Connection:
    """The writer connection to the collector database at ``path``, at the current schema
    and known to be writable; raises StoreError saying what is wrong."""
    _check_fts5()
    if path.is_dir():
        raise StoreError(f"--db {path} is a directory; give a file path such as {path}/c.db")
    existed = path.exists()
    directories = _missing_parents(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_dirs(directories)
        raise StoreError(
            f"cannot create the directory {path.parent} for the collector database: "
            f"{exc.strerror}; point --db at a writable path"
        ) from None
    conn = None
    try:
        try:
            conn = connect(path)
        except sqlite3.Error as exc:
            raise _unwritable(path, exc) from None
        _prepare(conn, path)
    except BaseException:
        if conn is not None:
            conn.close()
        if not existed:
            _remove(path, directories)
        raise
    return conn
