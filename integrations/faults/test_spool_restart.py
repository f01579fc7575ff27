"""A long outage and a hard restart lose nothing: the Flask example under gunicorn with three
workers, the collector down for longer than the agent's retry budget with traffic throughout,
then every worker SIGKILLed (gunicorn starts new ones, which get traffic too), then the
collector back. Every request arrives exactly once (counted by transaction id), within a
bounded time of the collector's return: the workers spooled what they could not deliver,
and the new workers, sharing the spool, sent what the killed ones had left.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("flask")

from integrations.faults import procfs, report
from integrations.faults.apps import GUNICORN, worker_pids
from integrations.faults.control import FaultCollector
from integrations.faults.load import drive
from integrations.harness import AppServer, wait_until
from moesif_agent._spooldir import spool_key

COMMAND = [*GUNICORN, "--workers", "3", "examples.flask_app:app"]
RETRY_BUDGET = 0.5  # max_retry_time, shortened: the outage traffic lasts several times longer
# From the collector's return to the last event: the workers' probes back off up to 15 s
# (+20% jitter), then each sends the backlog at up to 50 batches a second.
RECOVERY_BOUND = 30.0


def spooled_ids(directory: Path) -> set[str]:
    found: set[str] = set()
    for path in directory.glob("*.json.gz"):
        try:
            events = json.loads(gzip.decompress(path.read_bytes()))
        except FileNotFoundError:  # sent and deleted meanwhile
            continue
        found.update(event["transaction_id"] for event in events)
    return found


@pytest.mark.timeout(240)
def test_outage_then_every_worker_killed_then_recovery(
    faults: FaultCollector, tmp_path: Path
) -> None:
    env = {
        "MOESIF_MAX_RETRY_TIME": str(RETRY_BUDGET),
        "MOESIF_SPOOL_DIR": str(tmp_path / "spool"),
    }
    spool = tmp_path / "spool" / spool_key("integration-tests", faults.url)
    server = AppServer(COMMAND, faults.url, env=env)
    assert faults.proc is not None
    try:
        healthy = drive(server.url, 300)
        faults.wait_delivered(healthy.ids, timeout=30)

        faults.set_mode("down")
        started = time.monotonic()
        outage = drive(server.url, 2000)
        outage_s = time.monotonic() - started
        # Before the kill, what the workers hold must be on disk: memory dies with them.
        wait_until(lambda: set(outage.ids) <= spooled_ids(spool), 30, "spooled", faults.proc)

        killed = worker_pids(server)
        for pid in killed:
            os.kill(pid, signal.SIGKILL)

        def replaced() -> bool:
            pids = procfs.children(server.proc.pid)
            return len(pids) == 3 and not set(pids) & set(killed)

        wait_until(replaced, 30, "gunicorn's new workers", server.proc)
        after = drive(server.url, 300)  # the new workers, the collector still down
        wait_until(lambda: set(after.ids) <= spooled_ids(spool), 30, "spooled", faults.proc)
        files = len(list(spool.glob("*.json.gz")))

        faults.set_mode("healthy")
        ids = healthy.ids + outage.ids + after.ids
        recovery = faults.wait_delivered(ids, timeout=RECOVERY_BOUND + 30)
        wait_until(lambda: not list(spool.glob("*.json.gz")), 30, "spool emptied", server.proc)
    finally:
        server.stop()
    counts = faults.journal.counts(ids)
    failures = healthy.failures + outage.failures + after.failures
    report.add(
        "outage > max_retry_time, every gunicorn worker SIGKILLed, then recovery (spool)",
        requests=len(ids),
        failed=len(failures),
        outage_s=outage_s,
        spool_files_at_recovery=files,
        delivered=sum(1 for n in counts.values() if n),
        max_copies=max(counts.values()),
        recovery_s=recovery,
    )
    assert not failures, failures[:5]
    assert outage_s > RETRY_BUDGET
    assert files > 0
    assert set(counts.values()) == {1}  # every request, exactly once
    assert recovery < RECOVERY_BOUND
