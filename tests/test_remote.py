"""Remote config and rules end to end: fetched by the worker, refreshed on a new ETag."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from moesif_agent import Agent
from moesif_agent._exchange import Exchange
from tests.recorder import Answer, Recorder


def exchange(n: int, path: str = "/items") -> Exchange:
    ex = Exchange()
    ex.transaction_id = f"00000000-0000-4000-8000-{n:012d}"
    ex.request_time = ex.response_time = time.time()
    ex.host = "api.example"
    ex.path = path
    ex.status = 200
    return ex


def test_config_is_fetched_after_the_first_event_and_applied(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    recorder.serve_config({"sample_rate": 0})
    agent = make_agent()
    assert recorder.fetches() == 0  # nothing at startup
    agent.record(exchange(1))
    assert agent.flush(timeout=10)
    assert recorder.fetches() == 1
    assert agent.policy.etag == "etag-1"
    for n in range(2, 12):
        agent.record(exchange(n))
    assert agent.flush(timeout=10)
    assert len(recorder.events()) == 1  # the first event predates the config
    assert agent.stats()["sampled_out"] == 10


def test_a_new_etag_in_a_batch_response_applies_the_new_config_within_one_batch(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    recorder.serve_config({"sample_rate": 100}, etag="v1")
    agent = make_agent()
    agent.record(exchange(1))
    assert agent.flush(timeout=10)
    assert agent.policy.etag == "v1"
    recorder.serve_config({"sample_rate": 0}, etag="v2")  # the collector's config changes
    agent.record(exchange(2))  # its batch response carries v2
    assert agent.flush(timeout=10)
    assert agent.policy.etag == "v2"
    agent.record(exchange(3))
    assert agent.flush(timeout=10)
    assert [e["transaction_id"][-1] for e in recorder.events()] == ["1", "2"]
    assert recorder.fetches() == 2


def test_alternating_etags_cause_at_most_one_fetch_per_debounce_interval(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    recorder.serve_config({"sample_rate": 100}, etag="a")
    recorder.etag_cycle = ["a", "b"]  # two collector instances behind one address
    agent = make_agent(batch_size=1)
    agent._remote.debounce = 1.0
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < 2.5:
        n += 1
        agent.record(exchange(n))
        assert agent.flush(timeout=10)
    elapsed = time.monotonic() - started
    assert n > 20  # many batches, each answered with a different ETag than the last
    assert recorder.fetches() <= 1 + int(elapsed / agent._remote.debounce) + 1


def test_a_failed_fetch_keeps_the_policy_and_retries_with_backoff(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    recorder.serve_config({"sample_rate": 100}, etag="good")
    agent = make_agent()
    agent.record(exchange(1))
    assert agent.flush(timeout=10)
    assert agent.policy.etag == "good"
    recorder.get_answers["/v1/config"] = Answer(status=503)
    recorder.config_etag = "newer"
    agent.record(exchange(2))
    assert agent.flush(timeout=10)
    stats = agent.stats()
    assert stats["config"]["fetch_failures"] == 1
    assert agent.policy.etag == "good"
    assert agent._remote.next_fetch - time.monotonic() > 3  # backing off, not hammering


def test_malformed_documents_keep_the_last_good_ones(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    recorder.serve_config({"sample_rate": 0}, etag="good")
    agent = make_agent()
    agent.record(exchange(1))
    assert agent.flush(timeout=10)
    good = agent.policy
    bad: list[Any] = [b"{not json", b"[1, 2]", b'"a string"']
    for n, body in enumerate(bad):
        recorder.get_answers["/v1/config"] = Answer(
            200, {"X-Moesif-Config-ETag": f"bad{n}"}, body=body
        )
        recorder.get_answers["/v1/rules"] = Answer(
            200, {"X-Moesif-Config-ETag": f"bad{n}"}, body=b"{}"
        )
        recorder.config_etag = f"bad{n}"
        agent._remote.debounce = 0
        agent.record(exchange(10 + n))
        assert agent.flush(timeout=10)
        assert agent.policy.sampling.default == good.sampling.default == 0
