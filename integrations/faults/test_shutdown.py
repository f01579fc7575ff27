"""SIGTERM while the collector is down and events are queued: the server exits within the
agent's shutdown_timeout plus the server's own graceful overhead, it does not hang on the
dead collector, and what it could not deliver is in the spool for the next process."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("uvicorn")
pytest.importorskip("flask")
pytest.importorskip("fastapi")
pytest.importorskip("django")

from integrations.faults import report
from integrations.faults.apps import APPS, stop_timed
from integrations.faults.control import FaultCollector
from integrations.faults.load import drive
from integrations.faults.test_spool_restart import spooled_ids
from integrations.harness import AppServer
from moesif_agent._spooldir import spool_key

SHUTDOWN_TIMEOUT = 2.0
# The servers' own graceful stop with nothing queued takes well under a second here (the
# fault-cycle suite measures it on every run); 3 s is its allowance on a busy machine.
SERVER_OVERHEAD = 3.0

ENV = {
    "MOESIF_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
    "MOESIF_MAX_RETRY_TIME": "60",  # without the shutdown deadline it would retry a minute
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("app", list(APPS))
def test_sigterm_with_a_dead_collector(faults: FaultCollector, app: str, tmp_path: Path) -> None:
    server = AppServer(APPS[app], faults.url, env=ENV)
    try:
        faults.wait_delivered(drive(server.url, 200).ids, timeout=30)  # the worker is running
        faults.set_mode("down")
        queued = drive(server.url, 300)
    finally:
        seconds, code = stop_timed(server)
    report.add(
        "SIGTERM with the collector down and events queued (shutdown_timeout 2 s)",
        app=app,
        exit_s=seconds,
        bound_s=SHUTDOWN_TIMEOUT + SERVER_OVERHEAD,
        exit_code=code,
        failed=len(queued.failures),
    )
    spooled = spooled_ids(tmp_path / "spool" / spool_key("integration-tests", faults.url))
    assert not queued.failures, queued.failures[:5]
    assert code in (0, -signal.SIGTERM)
    assert seconds < SHUTDOWN_TIMEOUT + SERVER_OVERHEAD
    assert set(queued.ids) <= spooled  # the spool directory is the conftest's
