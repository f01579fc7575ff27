"""``moesif-agent collector`` as a process, and the database checks it starts with."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from moesif_agent.collector._cli import main
from moesif_agent.collector._errors import StoreError
from moesif_agent.collector._schema import SCHEMA_VERSION
from moesif_agent.collector._store import Store
from tests.collector.helpers import make_event

START_TIMEOUT = 30.0


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "moesif_agent", "collector", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen[str], ready: Path) -> str:
    """The collector's URL once it has written its ready file (a readiness probe)."""
    deadline = time.monotonic() + START_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None:
            raise AssertionError(f"collector exited with {proc.returncode}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("collector did not get ready")
        time.sleep(0.02)
    return ready.read_text().strip()


@pytest.fixture
def spawned(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    ready = tmp_path / "ready"
    proc = _spawn("--port", "0", "--db", str(tmp_path / "c.db"), "--ready-file", str(ready))
    try:
        yield proc, _wait_ready(proc, ready), ready
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_subprocess_serves_and_stops_cleanly(
    signum: int, spawned: tuple[subprocess.Popen[str], str, Path], tmp_path: Path
) -> None:
    proc, url, ready = spawned
    assert url.startswith("http://127.0.0.1:")
    assert not url.endswith(":0")

    posted = httpx.post(
        url + "/v1/events/batch",
        content=json.dumps([make_event(), make_event()]),
        headers={"X-Moesif-Application-Id": "cli-test"},
    )
    stats = httpx.get(url + "/api/stats").json()
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)

    assert posted.status_code == 201
    assert stats["events"] == 2
    assert proc.returncode == 0, stderr
    assert not ready.exists()
    assert f"moesif-agent collector listening on {url} (db {tmp_path / 'c.db'}" in stderr
    assert f"config default, rules default, app ids any); event viewer at {url}/" in stderr
    assert "moesif-agent collector stopped" in stderr
    assert "Traceback" not in stderr
    assert stderr.count("listening on") == 1
    with Store(tmp_path / "c.db") as store:
        assert store.stats()["events"] == 2


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--db", "--config", "--rules", "--app-id", "--ready-file"):
        assert option in out


def test_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "70000"]) == 2
    assert "is not a port number" in capsys.readouterr().err


def test_refuses_a_database_of_a_newer_version(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(StoreError, match="written by a newer moesif-agent collector"):
        Store(db)
    proc = _spawn("--port", "0", "--db", str(db))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert f"schema version {SCHEMA_VERSION + 1}; this one knows up to {SCHEMA_VERSION}" in stderr


def test_refuses_other_databases_and_files(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER)")
    conn.close()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)

    with pytest.raises(StoreError, match="not a moesif-agent collector database"):
        Store(other)
    with pytest.raises(StoreError, match="is not a usable SQLite database"):
        Store(garbage)


def test_creates_the_database_and_its_directory(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "er" / "collector.db"
    with Store(db) as store:
        assert store.stats()["events"] == 0
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
