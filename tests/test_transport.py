"""Delivery: batching, retries, bounds, flush/shutdown, fork and exit, against a real server."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moesif_agent import Agent
from moesif_agent._client import RETRY_AFTER_MAX, retry_after
from moesif_agent._exchange import Body, Exchange
from tests.recorder import Answer, Recorder


@pytest.fixture(autouse=True)
def _private_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's spool in its own directory: what one test could not deliver must not be
    sent by the next one."""
    monkeypatch.setenv("MOESIF_SPOOL_DIR", str(tmp_path / "spool"))


DOWN = Answer(status=503, body=b'{"error": "down for maintenance"}')


def wire_event(n: int, size: int = 0) -> dict[str, Any]:
    return {
        "transaction_id": f"00000000-0000-4000-8000-{n:012d}",
        "request": {
            "time": "2024-02-06T04:45:42.914Z",
            "uri": f"http://api.example/items/{n}",
            "verb": "GET",
            "headers": {"Host": "api.example"},
        },
        "response": {
            "time": "2024-02-06T04:45:42.915Z",
            "status": 200,
            "headers": {},
            "body": {"pad": "x" * size},
        },
    }


def test_many_threads_deliver_every_event_exactly_once_in_gzip_batches(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent(batch_size=100, event_queue_size=20_000)

    def produce(start: int) -> None:
        for n in range(start, start + 1250):
            agent.record(wire_event(n))

    threads = [threading.Thread(target=produce, args=(i * 1250,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert agent.flush(timeout=30)

    batches = recorder.batches()
    ids = [event["transaction_id"] for event in recorder.events()]
    assert len(ids) == 10_000
    assert len(set(ids)) == 10_000
    assert len(batches) >= 100
    assert all(batch.headers["content-encoding"] == "gzip" for batch in batches)
    assert all(len(batch.json) <= 100 for batch in batches)
    assert batches[0].headers["x-moesif-application-id"] == "test-app"
    assert batches[0].headers["user-agent"].startswith("moesif-agent-python/")
    stats = agent.stats()
    assert stats["sent"] == 10_000
    assert stats["dropped"] == {}
    assert stats["queued"] == 0


@pytest.mark.parametrize(
    "failure",
    [Answer(status=500), Answer(status=503), Answer(close=True)],
    ids=["500", "503", "connection-closed"],
)
def test_transient_failures_are_retried_and_nothing_is_lost(
    recorder: Recorder, make_agent: Callable[..., Agent], failure: Answer
) -> None:
    agent = make_agent()
    assert agent.flush(timeout=10)  # the config fetch at startup is answered normally
    recorder.script = [failure, failure, failure]
    for n in range(50):
        agent.record(wire_event(n))
    assert agent.flush(timeout=30)
    ids = {event["transaction_id"] for event in recorder.events()}
    assert len(ids) == 50
    stats = agent.stats()
    assert stats["retries"] == 3
    assert stats["sent"] == 50
    assert stats["dropped"] == {}


def test_retry_after_is_honoured(recorder: Recorder, make_agent: Callable[..., Agent]) -> None:
    agent = make_agent()
    assert agent.flush(timeout=10)
    recorder.script = [Answer(status=429, headers={"Retry-After": "1"})]
    agent.record(wire_event(1))
    assert agent.flush(timeout=10)
    first, second = recorder.batches()
    assert 0.95 <= second.at - first.at < 2.0
    assert recorder.events()[0]["transaction_id"] == wire_event(1)["transaction_id"]


@pytest.mark.parametrize("status", [401, 402])
def test_client_errors_are_not_retried_split_or_spooled_and_are_counted(
    recorder: Recorder, make_agent: Callable[..., Agent], status: int
) -> None:
    agent = make_agent()
    assert agent.flush(timeout=10)
    recorder.script = [Answer(status=status, body=b'{"error": "no"}')]
    for n in range(3):
        agent.record(wire_event(n))
    assert not agent.flush(timeout=10)
    assert len(recorder.batches()) == 1
    stats = agent.stats()
    assert stats["dropped"] == {"rejected": 3}
    assert f"HTTP {status}" in stats["last_error"]
    assert stats["spool"]["files"] == 0


def test_payload_too_large_splits_the_batch(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent()
    assert agent.flush(timeout=10)
    recorder.script = [Answer(status=413)]
    for n in range(10):
        agent.record(wire_event(n))
    assert agent.flush(timeout=10)
    sizes = [len(batch.json) for batch in recorder.batches()]
    assert sizes == [10, 5, 5]
    assert agent.stats()["sent"] == 10


def test_batches_are_split_by_bytes(recorder: Recorder, make_agent: Callable[..., Agent]) -> None:
    agent = make_agent(batch_max_bytes=1_100_000, max_body_size=400_000)
    for n in range(6):
        agent.record(wire_event(n, size=300_000))
    assert agent.flush(timeout=10)
    batches = recorder.batches()
    assert sum(len(batch.json) for batch in batches) == 6
    assert all(len(batch.raw) < 1_100_000 for batch in batches)
    assert all(len(batch.json) <= 3 for batch in batches)


def test_shutdown_returns_within_its_timeout_when_the_collector_never_answers(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent(request_timeout=30)
    assert agent.flush(timeout=10)
    recorder.default = Answer(hang=True)
    for n in range(10):
        agent.record(wire_event(n))
    assert recorder.wait_for(3)  # the config, the rules, the batch
    started = time.monotonic()
    agent.shutdown(timeout=2)
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 3.0
    assert agent.stats()["dropped"] == {"shutdown": 10}
    agent.shutdown(timeout=2)  # idempotent, and returns at once
    assert time.monotonic() - started < 3.5


def test_flush_times_out_rather_than_blocking(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    recorder.default = Answer(hang=True)
    agent = make_agent(request_timeout=30)
    agent.record(wire_event(1))
    started = time.monotonic()
    assert agent.flush(timeout=0.5) is False
    assert time.monotonic() - started < 1.5


def test_queue_stays_bounded_while_the_collector_is_down(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent(
        base_uri="http://127.0.0.1:9", event_queue_size=1000, max_retry_time=0.2, spool_dir=None
    )
    event = wire_event(1)
    started = time.perf_counter()
    for _ in range(100_000):
        agent.record(event)
    elapsed = time.perf_counter() - started
    stats = agent.stats()
    assert stats["queued"] <= 1000
    # Besides the 1,000 queued, the worker takes a batch at a time and drops it after its
    # 0.2 s of retries: how many it gets through while the loop runs depends on the machine.
    assert stats["dropped"]["queue_full"] >= 90_000
    assert stats["captured"] == 100_000
    assert elapsed < 5  # record() never waits on the network
    agent.flush(timeout=10)
    stats = agent.stats()
    accounted = stats["sent"] + sum(stats["dropped"].values()) + stats["queued"]
    assert accounted == 100_000
    assert "ConnectError" in stats["last_error"]


def test_record_never_raises_on_garbage(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent()
    agent.record({"no": "request"})
    agent.record({"request": "not an object", "transaction_id": "x"})
    agent.record("not an event")  # type: ignore[arg-type]
    agent.record(wire_event(7))
    assert agent.flush(timeout=10)
    assert [e["transaction_id"] for e in recorder.events()] == [wire_event(7)["transaction_id"]]
    assert agent.stats()["dropped"] == {"invalid": 3}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Python 3.12+ warns at every fork of a process with threads; forking with the agent's worker
# alive is the case under test (what a prefork server's master does).
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_a_live_worker(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent()
    agent.record(wire_event(1))
    assert agent.flush(timeout=10)
    agent.record(wire_event(2))  # still queued in the parent at fork time: the parent sends it
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            agent.record(wire_event(3))
            code = 0 if agent.flush(timeout=10) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert agent.flush(timeout=10)
    ids = sorted(event["transaction_id"][-1] for event in recorder.events())
    assert ids == ["1", "2", "3"]


def test_events_recorded_before_a_normal_exit_are_delivered(recorder: Recorder) -> None:
    script = textwrap.dedent(
        f"""
        from moesif_agent import Agent
        agent = Agent(application_id="exit-test", base_uri={recorder.url!r}, batch_max_time=30)
        for n in range(250):
            agent.record({{"request": {{"time": "2024-01-01T00:00:00.000Z",
                "uri": "http://x/" + str(n), "verb": "GET", "headers": {{}}}}}})
        """
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    assert time.monotonic() - started < 10
    assert len(recorder.events()) == 250


def test_exit_with_a_dead_collector_is_bounded_by_shutdown_timeout(recorder: Recorder) -> None:
    recorder.default = Answer(hang=True)
    script = textwrap.dedent(
        f"""
        from moesif_agent import Agent
        agent = Agent(application_id="exit-test", base_uri={recorder.url!r},
                      shutdown_timeout=1, request_timeout=60)
        agent.record({{"request": {{"time": "2024-01-01T00:00:00.000Z",
            "uri": "http://x/", "verb": "GET", "headers": {{}}}}}})
        """
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    assert time.monotonic() - started < 5


def test_dry_run_keeps_masked_events_in_memory() -> None:
    agent = Agent(dry_run=True, batch_max_time=0.05)
    try:
        event = wire_event(1)
        event["request"]["headers"] = {"Authorization": "Bearer abc"}
        agent.record(event)
        assert agent.flush(timeout=5)
        (kept,) = agent.dry_run_events
        assert kept["transaction_id"] == event["transaction_id"]
        assert kept["request"]["headers"] == {"Authorization": "Bearer [REDACTED]"}
        assert event["request"]["headers"] == {"Authorization": "Bearer abc"}  # not mutated
    finally:
        agent.shutdown()


def test_the_worker_sees_whether_request_threads_are_queueing() -> None:
    # The worker releases the GIL during long encodes only while the app is queueing events:
    # a release costs a context switch even when no thread is waiting for it.
    from moesif_agent._queues import Channel

    channel = Channel("events", "/v1/events/batch", 10, lambda item: b"{}")
    assert not channel.app_active()
    channel.queue.extend([1, 2])
    assert channel.app_active()
    assert not channel.app_active()
    channel.queue.popleft()  # the worker takes one: not the app's doing
    channel.popped += 1
    assert not channel.app_active()
    channel.queue.append(3)
    assert channel.app_active()


def test_one_bad_event_is_isolated_and_the_rest_of_its_batch_delivered(tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    from moesif_agent.collector import LocalCollector

    with LocalCollector(tmp_path / "collector.db") as collector:
        agent = Agent(
            application_id=collector.application_id,
            base_uri=collector.url,
            batch_max_time=0.05,
            batch_size=64,
        )
        try:
            assert agent.flush(timeout=10)
            events = [wire_event(n) for n in range(64)]
            events[37]["direction"] = "Sideways"  # the collector refuses the whole batch
            for event in events:
                agent.record(event)
            assert agent.flush(timeout=20) is False
            stats = agent.stats()
            stored = {event["transaction_id"] for event in collector.events()}
        finally:
            agent.shutdown(timeout=2)
    good = {event["transaction_id"] for event in events} - {events[37]["transaction_id"]}
    assert stored == good
    assert stats["dropped"] == {"rejected": 1}
    assert stats["sent"] == 63
    assert stats["batches"] == 1 + 2 * 6  # halving 64 down to the one: two requests a level
    assert "direction" in stats["last_error"]


def test_a_collector_that_refuses_everything_costs_a_bounded_number_of_requests(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent()
    assert agent.flush(timeout=10)
    recorder.default = Answer(status=400, body=b'{"error": "no"}')
    for n in range(100):
        agent.record(wire_event(n))
    assert agent.flush(timeout=20) is False
    stats = agent.stats()
    assert stats["dropped"] == {"rejected": 100}
    assert len(recorder.batches()) <= 1 + 4 * 7 + 8  # not the 199 of splitting to the end


def big_exchange(n: int, size: int) -> Exchange:
    ex = Exchange()
    ex.transaction_id = f"00000000-0000-4000-8000-{n:012d}"
    ex.request_time = ex.response_time = time.time()
    ex.host, ex.method, ex.path, ex.status = "api.example", "POST", "/upload", 201
    for name in ("request_body", "response_body"):
        body = Body(size)
        body.add(os.urandom(size))
        setattr(ex, name, body)
    return ex


def test_the_queue_is_bounded_by_bytes_as_well_as_by_count(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    # The collector down and no spool: 500 requests with 2 x 100 KB bodies would hold 100 MB.
    agent = make_agent(
        queue_max_bytes=8_000_000, batch_max_bytes=1_100_000, max_retry_time=60, spool_dir=None
    )
    assert agent.flush(timeout=10)
    recorder.default = DOWN
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(500):
            agent.record(big_exchange(n, 100_000))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    stats = agent.stats()
    # The queue's 8 MB, the ~1 MB batch the worker retries (and its encoded copies), slack.
    assert grown < 14_000_000
    assert stats["queued_bytes"] <= 8_000_000
    assert "queue_full" not in stats["dropped"]
    # Past the bound events are counted as dropped. Besides the queue, the worker holds at most
    # two batches, encoded (these bodies are binary: a small note each): one being retried, one
    # filling while it waits.
    assert stats["dropped"]["queue_full_bytes"] >= 500 - 8_000_000 // 200_000 - 2 * 100 - 10


@pytest.mark.parametrize("value", ["inf", "1e12", "Fri, 31 Dec 9999 23:59:59 GMT", "99999999999"])
def test_a_retry_after_beyond_reason_is_capped(value: str) -> None:
    """A proxy's Retry-After of inf or the year 9999 must not stop delivery for good."""
    assert retry_after(value) == RETRY_AFTER_MAX


@given(st.text(max_size=40))
def test_retry_after_is_a_finite_wait_or_none_for_any_text(value: str) -> None:
    seconds = retry_after(value)
    assert seconds is None or 0.0 <= seconds <= RETRY_AFTER_MAX
