"""``moesif-agent collector`` as a process, and the database checks it starts with."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import httpx
import pytest

from moesif_agent.collector import LocalCollector
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


def _unprivileged() -> list[str]:
    """A command prefix under which file permissions apply, even to root (the tests may run
    as root in a container, where a read-only file would be written all the same)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv, so file permissions do not apply")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def _run(*args: str, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    command = [*prefix, sys.executable, "-m", "moesif_agent", "collector", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _start_read_only(db: Path, read_only: Path, mode: int) -> subprocess.CompletedProcess[str]:
    """Starts a collector on ``db`` while ``read_only`` has permissions ``mode``."""
    before = read_only.stat().st_mode
    read_only.chmod(mode)
    try:
        return _run("--port", "0", "--db", str(db), prefix=_unprivileged())
    finally:
        read_only.chmod(before)


def test_a_read_only_database_is_refused_at_start(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    Store(db).close()
    result = _start_read_only(db, db, 0o444)
    assert result.returncode == 2
    assert f"cannot write to the collector database {db} (attempt to write a readonly" in (
        result.stderr
    )
    assert f"make the file and its directory {tmp_path} writable" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("existing", [False, True])
def test_a_read_only_directory_is_refused_at_start(tmp_path: Path, existing: bool) -> None:
    db = tmp_path / "ro" / "c.db"
    db.parent.mkdir()
    if existing:
        Store(db).close()
    result = _start_read_only(db, db.parent, 0o555)
    assert result.returncode == 2
    assert f"cannot write to the collector database {db}" in result.stderr
    assert db.exists() == existing


def test_a_failed_start_leaves_no_database_behind(tmp_path: Path) -> None:
    db = tmp_path / "new" / "dir" / "c.db"
    bad_rules = tmp_path / "rules.json"
    bad_rules.write_text('[{"_id": "r1", "type": "user", "block": true, "response": {}}]')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = _run("--port", port, "--db", str(db))
    bad = _run("--port", "0", "--db", str(db), "--rules", str(bad_rules))
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    under_a_file = _run("--port", "0", "--db", str(blocked / "c.db"))

    assert busy.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    assert bad.returncode == 2
    assert f"the rules file {bad_rules} is invalid: [0].response.status must be" in bad.stderr
    assert under_a_file.returncode == 2
    assert f"cannot create the directory {blocked}" in under_a_file.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-age", "soon"], "'soon' is not a duration: write a number and a unit"),
        (["--max-age", "0.5x"], "is not a duration"),
        (["--max-events", "-5"], "'-5' is not a number of events (0: no limit)"),
    ],
)
def test_bad_retention_options(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def _reader(stream: IO[str]) -> queue.SimpleQueue[str | None]:
    """The lines of ``stream`` as they come (None at its end), read by a thread."""
    lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()

    def read() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _spawn_ready(tmp_path: Path, name: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    ready = tmp_path / f"{name}.ready"
    proc = _spawn(
        "--port", "0", "--db", str(tmp_path / f"{name}.db"), "--ready-file", str(ready), *args
    )
    return proc, _wait_ready(proc, ready)


def test_a_progress_line_while_events_arrive_unless_quiet(tmp_path: Path) -> None:
    quiet, quiet_url = _spawn_ready(tmp_path, "quiet", "--quiet")
    loud, loud_url = _spawn_ready(tmp_path, "loud")
    try:
        headers = {"X-Moesif-Application-Id": "cli-test"}
        batch = [make_event(), make_event(), make_event()]
        batch[-1]["response"]["status"] = 503
        for url in (quiet_url, loud_url):  # the quiet one first: it has had longer to speak
            sent = httpx.post(url + "/v1/events/batch", json=batch, headers=headers)
            assert sent.status_code == 201
        lines = _reader(loud.stderr)  # type: ignore[arg-type]
        while (line := lines.get(timeout=30)) is not None and "stored since start" not in line:
            pass
        assert line is not None
        assert line.startswith("collector: 3 events stored since start (")
        assert line.rstrip().endswith("/s); last: GET /items/{id} 503")
    finally:
        for proc in (quiet, loud):
            proc.send_signal(signal.SIGTERM)
        _, quiet_err = quiet.communicate(timeout=30)
        loud.communicate(timeout=30)
    assert quiet.returncode == 0
    assert "stored since start" not in quiet_err


def test_reset_deletes_what_was_stored(tmp_path: Path) -> None:
    db = tmp_path / "reset.db"
    with LocalCollector(db) as collector:
        httpx.post(
            collector.url + "/v1/events/batch",
            json=[make_event(), make_event()],
            headers={"X-Moesif-Application-Id": "x"},
        )
    proc, url = _spawn_ready(tmp_path, "reset", "--reset")
    try:
        stats = httpx.get(url + "/api/stats").json()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert stats["events"] == 0
    assert (
        f"--reset deleted 2 events, 0 actions, 0 users, 0 companies, 0 subscriptions from {db}"
        in stderr
    )
