"""The local collector's --config and --rules files drive sampling and governance of a running
app: editing them reaches the agent without a restart of either."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("flask")

from integrations.harness import AppServer, CollectorProcess

BLOCK_SEVEN = {
    "_id": "block-seven",
    "type": "regex",
    "block": True,
    "regex_config": [{"conditions": [{"path": "request.route", "value": "^/items/7$"}]}],
    "response": {"status": 403, "headers": {"X-Why": "rule {{0}}"}, "body": {"error": "no 7"}},
}
SAMPLE_HEALTH_OUT = {
    "sample_rate": 100,
    "regex_config": [
        {"conditions": [{"path": "request.route", "value": "^/health"}], "sample_rate": 0}
    ],
}


def until(condition: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError("the running app did not pick up the collector's new files")


def test_editing_config_and_rules_reaches_the_running_app(collector: CollectorProcess) -> None:
    server = AppServer(
        ["gunicorn", "--bind", "127.0.0.1:{port}", "--workers", "1", "examples.flask_app:app"],
        collector.url,
    )
    client = httpx.Client(base_url=server.url, timeout=10)
    try:
        # Events recorded before the agent's first config answer are sampled by that answer:
        # wait until one is stored, so that the first answer is the file as it is now.
        warm_up = str(uuid.uuid4())
        client.get("/items/1", headers={"X-Moesif-Transaction-Id": warm_up})
        until(lambda: any(e["transaction_id"] == warm_up for e in collector.events()))
        health_before = [str(uuid.uuid4()) for _ in range(5)]
        for txid in health_before:
            client.get("/health", headers={"X-Moesif-Transaction-Id": txid})
        assert client.get("/items/7").status_code == 200

        collector.write_config(SAMPLE_HEALTH_OUT)
        collector.write_rules([BLOCK_SEVEN])
        # The next batch response carries the new ETag; the agent refetches right away.
        until(lambda: client.get("/items/7").status_code == 403)
        blocked = client.get("/items/7")
        assert blocked.json() == {"error": "no 7"}
        assert blocked.headers["x-why"] == "rule UNKNOWN"
        assert client.get("/items/8").status_code == 200

        health_after = [str(uuid.uuid4()) for _ in range(20)]
        for txid in health_after:
            assert client.get("/health", headers={"X-Moesif-Transaction-Id": txid}).is_success
    finally:
        client.close()
        server.stop()
    stored = {event["transaction_id"]: event for event in collector.events()}
    assert all(txid in stored for txid in health_before)  # 100% before the change
    assert not any(txid in stored for txid in health_after)  # 0% after it
    blocked_events = [e for e in stored.values() if e.get("blocked_by") == "block-seven"]
    assert blocked_events and all(e["response"]["status"] == 403 for e in blocked_events)
