"""gunicorn --preload with 3 workers recycled every ~50 requests, then SIGTERM: every event
the agent accepted reaches the (real, local) collector, and every process leaves no thread
of the agent behind (each writes what it left at exit: ``gunicorn_exit_report.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("flask")

from integrations.faults import procfs, report
from integrations.faults.apps import stop_timed
from integrations.faults.load import drive
from integrations.harness import AppServer, CollectorProcess

REQUESTS = 600
COMMAND = [
    "gunicorn", "--bind", "127.0.0.1:{port}", "--preload", "--workers", "3",
    "--max-requests", "50", "--max-requests-jitter", "10", "--graceful-timeout", "10",
    "--config", "integrations/faults/gunicorn_exit_report.py", "examples.flask_app:app",
]  # fmt: skip
EXIT_BOUND = 5.0  # the agent's default shutdown_timeout; a healthy collector needs far less


@pytest.mark.timeout(120)
def test_preload_recycling_then_sigterm(collector: CollectorProcess, tmp_path: Path) -> None:
    server = AppServer(COMMAND, collector.url, env={"FAULTS_EXIT_REPORTS": str(tmp_path)})
    master = server.proc.pid
    try:
        load = drive(server.url, REQUESTS)
    finally:
        seconds, code = stop_timed(server)
    reports = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("*.json"))]
    workers = [r for r in reports if r["pid"] != master]
    stored = {event["transaction_id"] for event in collector.events()}
    missing = [txid for txid in load.ids if txid not in stored]
    sent = sum(agent["stats"]["sent"] for r in workers for agent in r["agents"])
    dropped = [agent["stats"]["dropped"] for r in workers for agent in r["agents"]]
    report.add(
        "gunicorn --preload, 3 workers, --max-requests 50 (+jitter 10), 600 requests, SIGTERM",
        failed=len(load.failures),
        delivered=f"{REQUESTS - len(missing)}/{REQUESTS}",
        worker_processes=len(workers),
        sent_by_workers=sent,
        dropped=sum(sum(d.values()) for d in dropped),
        threads_left_at_exit=sum(len(r["threads"]) for r in reports),
        exit_s=seconds,
        exit_code=code,
    )
    assert not load.failures, load.failures[:5]
    assert code == 0 and seconds < EXIT_BOUND
    assert not missing, f"{len(missing)} of {REQUESTS} events lost"
    # The workers were recycled: one serves at most 50 + 10 requests.
    assert len(workers) >= REQUESTS // 60
    assert any(r["pid"] == master for r in reports)
    for r in reports:
        assert r["threads"] == [], f"process {r['pid']} left threads running: {r}"
        for agent in r["agents"]:
            # The master preloads the app: its agent starts there too (the first config fetch,
            # inherited by the workers), each worker starts its own on its first request, and
            # all stop at exit. A replacement worker booted just before the SIGTERM may serve
            # nothing: it then never starts a thread and has nothing to deliver.
            if not agent["started_here"]:
                assert r["pid"] != master, r
                stats = agent["stats"]
                assert stats["sent"] == 0 and stats["queued"] == 0 and stats["batches"] == 0, r
            assert not agent["thread_alive"], r
            assert not agent["stats"]["dropped"], r
    assert sent >= REQUESTS  # every request, plus the readiness probes
    # Every worker has exited, not merely stopped answering (the master is reaped above).
    assert not [r["pid"] for r in reports if procfs.alive(r["pid"])]
