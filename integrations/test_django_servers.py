"""The Django example project under gunicorn (WSGI) and uvicorn (ASGI) against the local
collector."""

from __future__ import annotations

import signal

import pytest

pytest.importorskip("django")
pytest.importorskip("gunicorn")
pytest.importorskip("uvicorn")

from integrations.harness import (
    AppServer,
    CollectorProcess,
    by_transaction_id,
    drive,
    first_chunk_streams,
)

CONFIGURATIONS = {
    "gunicorn-sync-2-workers": [
        "gunicorn", "--bind", "127.0.0.1:{port}", "--workers", "2",
        "examples.django_project.wsgi:application",
    ],
    "uvicorn-asgi": [
        "uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--no-access-log",
        "examples.django_project.asgi:application",
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_every_request_becomes_one_event(collector: CollectorProcess, name: str) -> None:
    server = AppServer(CONFIGURATIONS[name], collector.url)
    try:
        first, total = first_chunk_streams(server.url)
        sent = drive(server.url, 1000)
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
    assert first < 0.9 and total >= 2.0
    events = by_transaction_id(collector.events())
    missing = [txid for txid in sent if txid not in events]
    assert not missing, f"{len(missing)} of 1000 events missing"
    for n, txid in enumerate(sent[:50]):
        event = events[txid]
        assert event["response"]["status"] == (201 if n % 2 else 200)
        assert event["metadata"]["route"] == ("/items" if n % 2 else "/items/<item_id>")
        if n % 2:
            assert event["request"]["body"]["n"] == n
            assert event["response"]["body"]["n"] == n


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_events_still_queued_at_sigterm_are_delivered(
    collector: CollectorProcess, name: str
) -> None:
    # Batches wait 30 s: everything is still queued when SIGTERM arrives. (uvicorn re-raises
    # the signal after shutting down, so only the lifespan shutdown can deliver them.)
    server = AppServer(CONFIGURATIONS[name], collector.url, env={"MOESIF_BATCH_MAX_TIME": "30"})
    try:
        sent = drive(server.url, 50, concurrency=2)
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
    events = by_transaction_id(collector.events())
    assert [txid for txid in sent if txid not in events] == []


def test_boots_and_serves_normally_with_the_collector_down() -> None:
    # Nothing listens on the discard port: the agent must neither delay the boot nor fail a
    # request (the reference agent kept the app from booting here).
    server = AppServer(CONFIGURATIONS["gunicorn-sync-2-workers"], "http://127.0.0.1:9")
    try:
        sent = drive(server.url, 200, concurrency=4)
    finally:
        assert server.stop() == 0
    assert len(sent) == 200
