"""What the agent says in the host's log about delivery: a few lines, at the right moments,
through stdlib logging only."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from moesif_agent import Agent
from moesif_agent._health import short_id
from tests.recorder import Answer, Recorder
from tests.test_remote import closed_port, exchange
from tests.test_transport import DOWN, wire_event


@pytest.fixture(autouse=True)
def _private_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOESIF_SPOOL_DIR", str(tmp_path / "spool"))


class Lines(logging.Handler):
    """The agent's log records, and an event set when one matching ``wanted`` arrives."""

    def __init__(self, wanted: str = "") -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.wanted = wanted
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.wanted and self.wanted in record.getMessage():
            self.seen.set()

    def at(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]

    def matching(self, text: str, level: int = logging.INFO) -> list[str]:
        return [line for line in self.at(level) if text in line]


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("moesif_agent")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_an_unreachable_collector_is_named_in_the_log_within_seconds(lines: Lines) -> None:
    address = f"127.0.0.1:{closed_port()}"
    lines.wanted = "is base_uri right?"
    started = time.monotonic()
    agent = Agent(application_id="app-under-test", base_uri=f"http://{address}")
    try:
        agent.record(exchange(1))
        assert lines.seen.wait(5)
        assert time.monotonic() - started < 5
        (warning,) = lines.at(logging.WARNING)
        assert f"http://{address}/v1/config failed: ConnectError" in warning
        assert "connection refused or unreachable" in warning
    finally:
        agent.shutdown(timeout=1)


def test_start_failure_spooling_recovery_and_resend_are_each_said_once(
    recorder: Recorder, make_agent: Callable[..., Agent], lines: Lines
) -> None:
    agent = make_agent(application_id="0123456789abcdefwxyz", max_retry_time=0.1, batch_size=10)
    assert agent.flush(timeout=10)
    recorder.default = DOWN
    for n in range(50):  # five batches, each failing
        agent.record(wire_event(n))
        if n % 10 == 9:
            agent.flush(timeout=10)
    recorder.default = Answer()
    deadline = time.monotonic() + 20
    while not lines.matching("re-sent") and time.monotonic() < deadline:
        agent.flush(timeout=1)

    (started,) = lines.matching("sending events for application")
    assert "0123…wxyz" in started and recorder.url in started
    assert "0123456789abcdef" not in "".join(lines.at(logging.INFO) + lines.at(logging.WARNING))
    (failure,) = [line for line in lines.at(logging.WARNING) if "/v1/rules" not in line]
    assert "HTTP 503" in failure and recorder.url in failure and "kept and retried" in failure
    assert len(lines.matching("keeping them in")) == 1
    assert len(lines.matching("answers again")) == 1
    assert lines.matching("re-sent") == ["moesif-agent: re-sent 50 spooled items"]
    assert len(lines.at(logging.INFO)) == 4  # nothing per batch


def test_a_wrong_application_id_is_said_at_once_with_what_to_check(
    recorder: Recorder, make_agent: Callable[..., Agent], lines: Lines
) -> None:
    recorder.default = Answer(status=401, body=b'{"error": "unknown application"}')
    agent = make_agent()
    agent.record(wire_event(1))
    agent.flush(timeout=10)
    (warning, *_) = lines.at(logging.WARNING)
    assert "HTTP 401" in warning and "check application_id" in warning


def test_debug_shows_each_batch_and_each_config_change(
    recorder: Recorder, make_agent: Callable[..., Agent], lines: Lines
) -> None:
    recorder.serve_config({"sample_rate": 100}, etag="v1")
    agent = make_agent()
    for n in range(3):
        agent.record(wire_event(n))
    assert agent.flush(timeout=10)
    debug = lines.at(logging.DEBUG)
    assert any("new config/rules (etag v1): sample_rate 100.0" in line for line in debug)
    (batch,) = [line for line in debug if line.startswith("moesif-agent: POST /v1/events")]
    assert "3 events" in batch and "bytes gzipped, 201 in" in batch and batch.endswith(" ms")


def test_application_ids_are_shortened_in_logs() -> None:
    assert short_id("0123456789abcdefwxyz") == "0123…wxyz"
    assert short_id("short-id") == "sh…"
