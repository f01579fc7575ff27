from __future__ import annotations

from collections.abc import Iterator

import pytest

from integrations.faults import report
from integrations.faults.control import FaultCollector


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
