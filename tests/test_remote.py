"""Remote config and rules end to end: fetched by the worker, refreshed on a new ETag."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from moesif_agent import Agent, _guard, _policy
from moesif_agent._exchange import Exchange
from tests.recorder import Answer, Recorder


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(autouse=True)
def _private_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's spool in its own directory: what one test could not deliver must not be
    sent by the next one."""
    monkeypatch.setenv("MOESIF_SPOOL_DIR", str(tmp_path / "spool"))


def exchange(n: int, path: str = "/items") -> Exchange:
    ex = Exchange()
    ex.transaction_id = f"00000000-0000-4000-8000-{n:012d}"
    ex.request_time = ex.response_time = time.time()
    ex.host = "api.example"
    ex.path = path
    ex.status = 200
    return ex


def test_config_is_fetched_at_startup_and_decides_events_recorded_before_it(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    recorder.serve_config({"sample_rate": 0})
    # A slow answer: the events below are recorded while the fetch is in flight.
    recorder.get_answers["/v1/config"].delay = 0.5
    started = time.monotonic()
    agent = make_agent()
    assert time.monotonic() - started < 0.1  # startup never waits on the collector
    for n in range(5):
        agent.record(exchange(n))  # e.g. the first /health probes after a deploy
    assert agent.flush(timeout=10)  # waits for the fetch, then for those events
    assert recorder.fetches() == 1
    assert agent.policy.etag == "etag-1"
    for n in range(5, 15):
        agent.record(exchange(n))
    assert agent.flush(timeout=10)
    assert recorder.events() == []
    stats = agent.stats()
    assert stats["sampled_out"] == 15
    assert stats["captured"] == 0


def test_flush_waits_for_the_first_fetch_even_with_nothing_recorded(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    recorder.serve_config({"sample_rate": 10}, etag="first")
    recorder.get_answers["/v1/config"].delay = 0.3
    agent = make_agent()
    assert agent.flush(timeout=10)
    assert agent.policy.etag == "first"
    assert agent.stats()["config"]["fetches"] == 1


def test_events_held_for_the_first_config_get_unbiased_weights(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    recorder.serve_config({"sample_rate": 20})
    recorder.get_answers["/v1/config"].delay = 0.5
    agent = make_agent(event_queue_size=5000)
    requests = 2000
    for n in range(requests):
        agent.record(exchange(n))
    assert agent.flush(timeout=30)
    weights = [event.get("weight", 1) for event in recorder.events()]
    assert 0.15 * requests < len(weights) < 0.25 * requests
    # Each kept event stands for the requests since the previous kept one: the weights add
    # up to the requests, but for the few after the last kept event.
    assert requests - 40 <= sum(weights) <= requests
    assert agent.stats()["captured"] + agent.stats()["sampled_out"] == requests


def test_a_collector_that_is_down_at_startup_lets_the_held_events_through(
    make_agent: Callable[..., Agent],
) -> None:
    agent = make_agent(
        base_uri=f"http://127.0.0.1:{closed_port()}", spool_dir=None, max_retry_time=0
    )
    for n in range(3):
        agent.record(exchange(n))
    assert agent.flush(timeout=10) is False  # not delivered, but decided: kept, as by default
    stats = agent.stats()
    assert stats["captured"] == 3
    assert stats["config"]["fetch_failures"] == 1


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


GUARD = {
    "_id": "good",
    "type": "regex",
    "block": True,
    "regex_config": [{"conditions": [{"path": "request.route", "value": "^/admin"}]}],
    "response": {"status": 403, "body": {"error": "forbidden"}},
}


def deep_rule(depth: int = 900) -> bytes:
    """A rule whose response body is ``depth`` arrays deep, as JSON text."""
    rule = {"_id": "deep", "type": "regex", "block": True, "response": {"status": 403, "body": 0}}
    deep = "[" * depth + '"x"' + "]" * depth
    return json.dumps(rule).replace('"body": 0', f'"body": {deep}').encode()


def blocked_by(agent: Agent, path: str) -> str | None:
    plan = agent.policy.begin(exchange(99, path))
    return plan.block.rule_id if plan is not None and plan.block is not None else None


def test_a_rule_nested_absurdly_deep_is_skipped_and_the_rest_is_installed(
    recorder: Recorder, make_agent: Callable[..., Agent], caplog: pytest.LogCaptureFixture
) -> None:
    recorder.serve_config({"sample_rate": 0}, etag="v1")
    rules = b"[" + deep_rule() + b", " + json.dumps(GUARD).encode() + b"]"
    recorder.get_answers["/v1/rules"] = Answer(200, body=rules)
    agent = make_agent()
    assert agent.flush(timeout=10)
    assert agent.policy.etag == "v1"
    assert agent.policy.sampling.default == 0  # the config that came with it is in force
    assert agent.stats()["config"]["rules_skipped"] == 1
    assert blocked_by(agent, "/admin/users") == "good"
    assert blocked_by(agent, "/items") is None
    recorder.config_etag = "v2"  # the next refresh brings the same rules: compiled again
    agent._remote.next_fetch = 0
    assert agent.flush(timeout=10)
    assert recorder.fetches("/v1/rules") == 2
    assert agent.policy.etag == "v2"
    assert blocked_by(agent, "/admin/users") == "good"
    logged = [
        r.getMessage() for r in caplog.records if "moesif-agent: rule 'deep'" in r.getMessage()
    ]
    assert len(logged) == 1, logged
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def serve(recorder: Recorder, config: bytes, rules: bytes, etag: str) -> None:
    """The documents under this X-Moesif-Config-ETag, with HTTP ETags for If-None-Match."""
    recorder.config_etag = etag
    recorder.get_answers["/v1/config"] = Answer(200, {"ETag": f'"c-{etag}"'}, body=config)
    recorder.get_answers["/v1/rules"] = Answer(200, {"ETag": f'"r-{etag}"'}, body=rules)


def if_none_match(recorder: Recorder, path: str) -> str | None:
    gets = [r for r in recorder.iter_requests() if r.method == "GET" and r.path == path]
    return gets[-1].headers.get("if-none-match")


def test_documents_that_cannot_be_compiled_are_not_kept_and_the_last_good_policy_stays(
    recorder: Recorder,
    make_agent: Callable[..., Agent],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whatever compiling the documents raises (here a bug of the compiler's own, as no
    document is known to make it raise), the policy in force stays, nothing of the new
    documents is kept, and good documents are installed later."""

    class BuggySampling(_policy.Sampling):
        def __init__(self, config: Any) -> None:
            if "compiler_bug" in config:
                raise RuntimeError("a bug in the compiler")
            super().__init__(config)

    monkeypatch.setattr(_policy, "Sampling", BuggySampling)
    monkeypatch.setattr(_guard, "reraise", False)  # production behaviour: log once, go on
    serve(recorder, b'{"sample_rate": 100}', json.dumps([GUARD]).encode(), "v1")
    agent = make_agent()
    agent.record(exchange(1))
    assert agent.flush(timeout=10)
    assert agent.policy.etag == "v1"
    agent._remote.debounce = 0
    # A new config that cannot be compiled, alongside new rules that could be.
    serve(recorder, b'{"sample_rate": 0, "compiler_bug": true}', b"[]", "v2")
    agent.record(exchange(2))  # its batch response carries v2: a fetch
    assert agent.flush(timeout=10)
    assert recorder.fetches() == 2
    assert agent.policy.etag == "v1"  # the last good policy, all of it, stays in force
    assert agent.policy.sampling.default == 100
    assert blocked_by(agent, "/admin") == "good"
    # More batches answered with v2 do not fetch the same documents again at once...
    agent.record(exchange(3))
    assert agent.flush(timeout=10)
    assert recorder.fetches() == 2
    # ...but their ETags were not kept: the next refresh fetches them whole again.
    agent._remote.next_fetch = 0
    assert agent.flush(timeout=10)
    assert recorder.fetches() == 3
    assert if_none_match(recorder, "/v1/config") == '"c-v1"'
    assert if_none_match(recorder, "/v1/rules") == '"r-v1"'
    assert agent.policy.etag == "v1"
    # Good documents under a new ETag are installed at the next batch.
    serve(recorder, b'{"sample_rate": 0}', b"[]", "v3")
    agent.record(exchange(4))
    assert agent.flush(timeout=10)
    assert recorder.fetches() == 4
    assert if_none_match(recorder, "/v1/config") == '"c-v1"'
    assert agent.policy.etag == "v3"
    assert agent.policy.sampling.default == 0
    assert blocked_by(agent, "/admin") is None
    agent.record(exchange(5))  # sampled out by v3
    agent._remote.next_fetch = 0
    assert agent.flush(timeout=10)
    assert if_none_match(recorder, "/v1/config") == '"c-v3"'  # kept once installed
    assert if_none_match(recorder, "/v1/rules") == '"r-v3"'
    logged = [r for r in caplog.records if "could not compile" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert "RuntimeError: a bug in the compiler" in logged[0].getMessage()
    # 3 was recorded after the failed compile: v1's sample_rate 100 still decided it.
    assert [e["transaction_id"][-1] for e in recorder.events()] == ["1", "2", "3", "4"]
