"""The Flask example under gunicorn (sync, gthread, --preload) against the local collector."""

from __future__ import annotations

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("flask")

from integrations.harness import (
    AppServer,
    CollectorProcess,
    by_transaction_id,
    drive,
    first_chunk_streams,
)

GUNICORN = ["gunicorn", "--bind", "127.0.0.1:{port}", "--graceful-timeout", "10"]
CONFIGURATIONS = {
    "sync-2-workers": [*GUNICORN, "--workers", "2", "examples.flask_app:app"],
    "gthread-4-threads": [
        *GUNICORN,
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "examples.flask_app:app",
    ],
    "preload-2-workers": [*GUNICORN, "--preload", "--workers", "2", "examples.flask_app:app"],
}


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_every_request_becomes_one_event(collector: CollectorProcess, name: str) -> None:
    server = AppServer(CONFIGURATIONS[name], collector.url)
    try:
        first, total = first_chunk_streams(server.url)
        sent = drive(server.url, 1000)
    finally:
        assert server.stop() == 0
    assert first < 0.9 and total >= 2.0  # the stream still streams under the agent
    events = by_transaction_id(collector.events())
    missing = [txid for txid in sent if txid not in events]
    assert not missing, f"{len(missing)} of 1000 events missing"
    for n, txid in enumerate(sent[:50]):
        event = events[txid]
        assert event["request"]["verb"] == ("POST" if n % 2 else "GET")
        assert event["response"]["status"] == (201 if n % 2 else 200)
        assert event["metadata"]["route"] == ("/items" if n % 2 else "/items/<item_id>")
        if n % 2:
            assert event["request"]["body"]["n"] == n
            assert event["response"]["body"]["n"] == n
        assert event["request"]["uri"].startswith("http://127.0.0.1:")
    streams = [e for e in events.values() if e["request"]["uri"].endswith("delay=1.0")]
    assert len(streams) == 1
    assert streams[0]["response"]["body"]
