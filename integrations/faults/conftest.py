from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integrations.faults import report
from integrations.faults.control import FaultCollector


@pytest.fixture(autouse=True)
def _private_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers a test starts spool into its own directory (they inherit the environment),
    not the user's cache: what one test could not deliver must not reach another."""
    monkeypatch.setenv("MOESIF_SPOOL_DIR", str(tmp_path / "spool"))


@pytest.fixture
def faults() -> Iterator[FaultCollector]:
    collector = FaultCollector()
    yield collector
    collector.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not report.TABLES:
        return
    terminalreporter.section("fault injection: measurements")
    for line in report.markdown():
        terminalreporter.write_line(line)
    report.write_json()
