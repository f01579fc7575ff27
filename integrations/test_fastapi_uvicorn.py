"""The FastAPI and Starlette examples under uvicorn (1 and 2 workers) and gunicorn's uvicorn
worker, against the local collector."""

from __future__ import annotations

import signal

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from integrations.harness import (
    AppServer,
    CollectorProcess,
    by_transaction_id,
    drive,
    first_chunk_streams,
)

UVICORN = ["uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--no-access-log"]
CONFIGURATIONS = {
    "uvicorn-1-worker": [*UVICORN, "examples.fastapi_app:app"],
    "uvicorn-2-workers": [*UVICORN, "--workers", "2", "examples.fastapi_app:app"],
    "gunicorn-uvicorn-worker-2": [
        "gunicorn", "--bind", "127.0.0.1:{port}", "--workers", "2",
        "--worker-class", "uvicorn_worker.UvicornWorker", "examples.fastapi_app:app",
    ],
    "starlette-uvicorn": [*UVICORN, "examples.starlette_app:app"],
}  # fmt: skip


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_every_request_becomes_one_event(collector: CollectorProcess, name: str) -> None:
    server = AppServer(CONFIGURATIONS[name], collector.url)
    try:
        first, total = first_chunk_streams(server.url)
        sent = drive(server.url, 1000)
    finally:
        # uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is a clean exit too
        assert server.stop() in (0, -signal.SIGTERM)
    assert first < 0.9 and total >= 2.0
    events = by_transaction_id(collector.events())
    missing = [txid for txid in sent if txid not in events]
    assert not missing, f"{len(missing)} of 1000 events missing"
    for n, txid in enumerate(sent[:50]):
        event = events[txid]
        assert event["response"]["status"] == (201 if n % 2 else 200)
        assert event["metadata"]["route"] == ("/items" if n % 2 else "/items/{item_id}")
        if n % 2:
            assert event["request"]["body"]["n"] == n
            assert event["response"]["body"]["n"] == n
