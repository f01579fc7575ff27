from __future__ import annotations

from collections.abc import Iterator

import pytest

from integrations.harness import CollectorProcess


@pytest.fixture
def collector() -> Iterator[CollectorProcess]:
    running = CollectorProcess()
    yield running
    running.stop()
