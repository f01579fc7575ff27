"""Fixtures for the local collector tests: a real collector on a loopback ephemeral port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from moesif_agent.collector import LocalCollector
from tests.collector.helpers import APP_ID


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[LocalCollector]:
    with LocalCollector(tmp_path / "collector.db") as running:
        yield running


@pytest.fixture
def http(collector: LocalCollector) -> Iterator[httpx.Client]:
    """A client of ``collector`` that sends the application id."""
    with httpx.Client(
        base_url=collector.url, headers={"X-Moesif-Application-Id": APP_ID}, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="module")
def shared_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCollector]:
    """One collector for a whole module, for tests that do not depend on what others stored."""
    with LocalCollector(tmp_path_factory.mktemp("shared") / "collector.db") as running:
        yield running


@pytest.fixture(scope="module")
def shared_http(shared_collector: LocalCollector) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=shared_collector.url, headers={"X-Moesif-Application-Id": APP_ID}, timeout=30
    ) as client:
        yield client
