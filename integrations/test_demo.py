"""`moesif-agent demo` exits 0 and its counts match the collector's /api/stats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("uvicorn")

from integrations.harness import ROOT


def test_demo_runs_and_its_summary_matches_the_collector() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "moesif_agent", "demo", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["consistent"] is True
    assert (
        summary["events_stored"]
        == summary["events_expected"]
        == (summary["requests_sent"] - summary["sampled_out"])
    )
    assert summary["blocked"] == summary["blocked_stored"] >= 6
    assert summary["events_per_route"]["POST /items"] == 6
    assert summary["viewer"].startswith("http://127.0.0.1:")

    # The servers are gone once the demo ends; the events stay browsable from its database.
    from moesif_agent.collector import LocalCollector

    reopened = LocalCollector(Path(summary["database"])).start()
    try:
        assert reopened.stats()["events"] == summary["events_stored"]
    finally:
        reopened.stop()
