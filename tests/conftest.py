from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from moesif_agent import Agent, _guard, _lifecycle
from tests.recorder import Recorder


@pytest.fixture(autouse=True)
def _strict_guard() -> Iterator[None]:
    """An internal error the agent would swallow in production fails the test instead."""
    _guard.reraise = True
    _guard.reset_log_once()
    yield
    _guard.reraise = False


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MOESIF_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _own_spool(_clean_environment: None, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches a test's agents cannot deliver are spooled under the test's own directory,
    never into the user's cache (a test may still pass spool_dir explicitly)."""
    monkeypatch.setenv("MOESIF_SPOOL_DIR", str(tmp_path / "spool"))


def shutdown_shared_agents() -> None:
    for agent in _lifecycle.forget_shared():
        assert isinstance(agent, Agent)
        agent.shutdown(timeout=2)


@pytest.fixture(autouse=True)
def _shared_agents() -> Iterator[None]:
    """Agents that middleware created during a test are shut down and forgotten after it."""
    yield
    shutdown_shared_agents()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with Recorder() as rec:
        yield rec


@pytest.fixture
def make_agent(recorder: Recorder) -> Iterator[Callable[..., Agent]]:
    """Agents pointed at the test's recorder; each is shut down when the test ends."""
    agents: list[Agent] = []

    def make(**options: Any) -> Agent:
        options.setdefault("application_id", "test-app")
        options.setdefault("base_uri", recorder.url)
        options.setdefault("batch_max_time", 0.05)
        agent = Agent(**options)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.shutdown(timeout=2)


@pytest.fixture
def settings(recorder: Recorder) -> Iterator[dict[str, Any]]:
    """Middleware settings pointing at the test's recorder (fast batches). The middleware's
    shared agents are shut down before the recorder stops."""
    yield {"application_id": "test-app", "base_uri": recorder.url, "batch_max_time": 0.05}
    shutdown_shared_agents()
