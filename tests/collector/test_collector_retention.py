"""Retention: the database keeps at most ``max_events`` events and actions, none older than
``max_age``, and its search index forgets what was deleted."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from moesif_agent.collector import LocalCollector
from moesif_agent.collector import _validate as validate
from moesif_agent.collector._retention import Retention, format_duration, parse_duration
from moesif_agent.collector._store import Store
from moesif_agent.collector._timefmt import now_micros
from tests.collector.helpers import APP_ID, make_event, post, version_1_database

DAY = 86_400_000_000


def _rows(count: int, received_at: int, word: str = "kept") -> list[Any]:
    events = [make_event() for _ in range(count)]
    for event in events:
        event["response"]["body"] = {"word": word}
    pairs = [(event, json.dumps(event)) for event in events]
    return validate.events(pairs, received_at, batch=True)


def _sync(store: Store) -> None:
    """Returns once the writer has run every job queued before this call."""
    done = threading.Event()
    store.submit(lambda: None, lambda result, error: done.set())
    assert done.wait(10)


def _check(store: Store) -> list[int]:
    """The ids left, after FTS5 compared its index with the events (it raises if they
    disagree)."""
    conn = store._writer
    conn.execute("INSERT INTO events_fts (events_fts) VALUES ('integrity-check')")
    return [row[0] for row in conn.execute("SELECT id FROM events ORDER BY id")]


def test_the_oldest_events_go_beyond_max_events(tmp_path: Path) -> None:
    with Store(tmp_path / "c.db", Retention(max_events=100, max_age=None)) as store:
        store.add_events(_rows(150, now_micros(), "gone"))
        _sync(store)
        assert len(_check(store)) == 150  # within the slack: no trim for a few rows over

        store.add_events(_rows(100, now_micros()))
        _sync(store)

        assert _check(store) == list(range(151, 251))
        assert store.stats()["events"] == 100
        search = "SELECT COUNT(*) FROM events_fts WHERE events_fts MATCH ?"
        assert store._writer.execute(search, ("gone",)).fetchone()[0] == 0
        assert store._writer.execute(search, ("kept",)).fetchone()[0] == 100


def test_events_older_than_max_age_go_at_start(tmp_path: Path) -> None:
    now = now_micros()
    with Store(tmp_path / "c.db", Retention(max_events=None, max_age=None)) as store:
        store.add_events(_rows(30, now - 3 * DAY, "old"))
        store.add_events(_rows(20, now - DAY // 2))

    with Store(tmp_path / "c.db", Retention(max_events=None, max_age=86400)) as store:
        _sync(store)
        assert _check(store) == list(range(31, 51))


def test_a_collector_trims_while_it_serves(tmp_path: Path) -> None:
    retention = Retention(max_events=100, max_age=None)
    with (
        LocalCollector(tmp_path / "c.db", retention=retention) as collector,
        httpx.Client(base_url=collector.url, headers={"X-Moesif-Application-Id": APP_ID}) as http,
    ):
        assert post(http, "/v1/events/batch", [make_event() for _ in range(250)]).status_code == 201
        # The trim was queued on the writer before this batch: it ran first.
        assert post(http, "/v1/events", make_event()).status_code == 201
        assert collector.stats()["events"] == 101


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        *[("30d", 30 * 86400.0), ("12h", 43200.0), ("90m", 5400.0), ("1.5s", 1.5)],
        *[("2w", 1209600.0), ("off", None), ("0", None), (" None ", None)],
    ],
)
def test_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("seconds", "text"), [(30 * 86400.0, "30d"), (43200.0, "12h"), (90.0, "90s"), (1209600.0, "2w")]
)
def test_durations_are_written_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_events must be at least 1"):
        Retention(max_events=0)
    with pytest.raises(ValueError, match="0s"):
        parse_duration("0s")


def _ids(http: httpx.Client, name: str) -> list[int]:
    return sorted(item["_id"] for item in http.get(f"/api/{name}").json()["items"])


def test_an_id_is_never_given_twice(tmp_path: Path) -> None:
    """A permalink (#events/<id>) names one event for good: after the data is cleared, new
    events and actions get new ids, and the old ones answer 404 instead of another event."""
    action = {"action_name": "Clicked", "request": make_event()["request"]}
    with (
        LocalCollector(tmp_path / "c.db") as collector,
        httpx.Client(base_url=collector.url, headers={"X-Moesif-Application-Id": APP_ID}) as http,
    ):
        assert post(http, "/v1/events/batch", [make_event() for _ in range(3)]).status_code == 201
        assert post(http, "/v1/actions", action).status_code == 201
        old_events, old_actions = _ids(http, "events"), _ids(http, "actions")
        same_origin = {"Origin": collector.url, "Sec-Fetch-Site": "same-origin"}
        assert http.delete("/api/data", headers=same_origin).status_code == 200

        assert post(http, "/v1/events/batch", [make_event() for _ in range(2)]).status_code == 201
        assert post(http, "/v1/actions", action).status_code == 201
        new_events, new_actions = _ids(http, "events"), _ids(http, "actions")
        gone = http.get(f"/api/events/{old_events[0]}")

    assert min(new_events) > max(old_events) and len(new_events) == 2
    assert min(new_actions) > max(old_actions)
    assert gone.status_code == 404


def test_ids_survive_a_schema_upgrade_and_a_reset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database written by an older collector keeps its ids (the search index points at
    them) and never gives them again, not even after everything was deleted and vacuumed."""
    db = tmp_path / "old.db"
    event = make_event()
    event["response"]["body"] = {"word": "upgraded"}
    version_1_database(db, [(5, event), (9, {**event, "transaction_id": "t-9", "weight": 3})])

    with (
        caplog.at_level(logging.INFO, "moesif_agent.collector"),
        Store(db, Retention(max_events=None, max_age=None)) as store,
    ):
        assert f"collector database {db} upgraded from schema version 1 to " in caplog.text
        assert _check(store) == [5, 9]
        search = "SELECT rowid FROM events_fts WHERE events_fts MATCH 'upgraded' ORDER BY rowid"
        assert [row[0] for row in store._writer.execute(search)] == [5, 9]
        store.clear()
        store.vacuum()
    with Store(db, Retention(max_events=None, max_age=None)) as store:
        store.add_events(_rows(2, now_micros()))
        _sync(store)
        assert _check(store) == [10, 11]
