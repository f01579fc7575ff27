"""Users, companies, subscriptions and actions: validation, batching, merging, sync and async."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from moesif_agent import Agent
from tests.recorder import Answer, Recorder

pytest.importorskip("uvicorn")

from moesif_agent.collector._server import LocalCollector


@pytest.fixture
def collector() -> Iterator[LocalCollector]:
    with LocalCollector() as running:
        yield running


@pytest.fixture
def collector_agent(collector: LocalCollector) -> Iterator[Agent]:
    agent = Agent(
        application_id=collector.application_id, base_uri=collector.url, batch_max_time=0.05
    )
    yield agent
    agent.shutdown(timeout=2)


@pytest.mark.parametrize(
    ("method", "item", "message"),
    [
        ("update_user", {"company_id": "c"}, r"update_user: user_id is required"),
        ("update_user", {"user_id": ""}, r"user_id is required \(a non-empty string\)"),
        ("update_user", {"user_id": "u", "metadata": ["x"]}, r"metadata must be a dict"),
        ("update_user", "u1", r"a user must be a dict, got str"),
        ("update_company", {"company_domain": "x.com"}, r"company_id is required"),
        ("update_subscription", {"subscription_id": "s"}, r"company_id is required"),
        (
            "update_subscription",
            {"subscription_id": "s", "company_id": "c", "status": "gone"},
            r"status must be one of active, cancelled",
        ),
        ("track_action", {"action_name": "Clicked"}, r"request.uri is required"),
        ("track_action", {"request": {"uri": "https://x"}}, r"action_name is required"),
    ],
)
def test_invalid_input_raises_at_the_call(
    make_agent: Callable[..., Agent], method: str, item: Any, message: str
) -> None:
    agent = make_agent()
    with pytest.raises((ValueError, TypeError), match=message):
        getattr(agent, method)(item)


def test_batch_errors_name_the_index(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent()
    with pytest.raises(ValueError, match=r"update_users_batch\[1\]: user_id is required"):
        agent.update_users_batch([{"user_id": "a"}, {"name": "no id"}])
    with pytest.raises(TypeError, match="expected a list of users"):
        agent.update_users_batch({"user_id": "a"})  # type: ignore[arg-type]


def test_many_updates_travel_in_few_batches(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent(batch_size=100)
    started = time.perf_counter()
    for n in range(250):
        agent.update_user({"user_id": n, "metadata": {"n": n}})  # an int id becomes a string
    assert time.perf_counter() - started < 1.0  # queued, never sent on the caller's thread
    assert agent.flush(timeout=10)
    batches = recorder.batches("/v1/users/batch")
    assert len(batches) <= 5
    users = [user for batch in batches for user in batch.json]
    assert len(users) == 250
    assert users[7] == {"user_id": "7", "metadata": {"n": 7}}
    assert agent.stats()["sent_by_kind"]["users"] == 250


def test_profiles_arrive_and_merge_in_the_local_collector(
    collector: LocalCollector, collector_agent: Agent
) -> None:
    agent = collector_agent
    agent.update_user({"user_id": "u1", "metadata": {"plan": "free", "profile": {"a": 1}}})
    agent.update_user({"user_id": "u1", "company_id": "c1", "metadata": {"profile": {"b": 2}}})
    agent.update_companies_batch([{"company_id": "c1", "metadata": {"mrr": 10}}])
    agent.update_subscription({"subscription_id": "s1", "company_id": "c1", "status": "active"})
    agent.track_actions_batch(
        [
            {"action_name": "Clicked Sign Up", "user_id": "u1", "request": {"uri": "https://x/"}},
            {"action_name": "Purchased", "company_id": "c1", "request": {"uri": "https://x/buy"}},
        ]
    )
    assert agent.flush(timeout=10)
    (user,) = collector.users()
    assert user["user_id"] == "u1"
    assert user["company_id"] == "c1"
    assert user["metadata"] == {"plan": "free", "profile": {"a": 1, "b": 2}}
    assert collector.companies()[0]["metadata"] == {"mrr": 10}
    assert collector.subscriptions()[0]["status"] == "active"
    names = sorted(action["action_name"] for action in collector.actions())
    assert names == ["Clicked Sign Up", "Purchased"]
    stats = collector.stats()
    assert (stats["users"], stats["companies"], stats["subscriptions"], stats["actions"]) == (
        1,
        1,
        1,
        2,
    )


def test_sync_sends_now_and_returns_the_collectors_answer(
    collector: LocalCollector, collector_agent: Agent
) -> None:
    outcome = collector_agent.update_company({"company_id": "c9"}, sync=True)
    assert outcome is not None and outcome.ok and outcome.status == 201
    assert [c["company_id"] for c in collector.companies()] == ["c9"]


def test_async_variant_does_not_block_the_event_loop(
    recorder: Recorder, make_agent: Callable[..., Agent]
) -> None:
    recorder.default = Answer(status=201, delay=0.5)
    agent = make_agent()

    async def scenario() -> tuple[int, Any]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(ticker())
        queued_at = time.perf_counter()
        agent.update_user({"user_id": "queued"})  # queued: returns at once inside the loop
        assert time.perf_counter() - queued_at < 0.05
        outcome = await agent.send_async("update_user", {"user_id": "now"})
        stop.set()
        await task
        return ticks, outcome

    ticks, outcome = asyncio.run(scenario())
    assert outcome.ok
    assert ticks >= 20  # the loop kept running while the slow collector answered
    with pytest.raises(ValueError, match="method must be one of"):
        asyncio.run(agent.send_async("delete_everything", {}))


def test_dry_run_keeps_entities_in_memory() -> None:
    agent = Agent(dry_run=True, batch_max_time=0.05)
    try:
        agent.track_action({"action_name": "Signed In", "request": {"uri": "https://x/login"}})
        assert agent.flush(timeout=5)
        (action,) = agent.dry_run_items("actions")
        assert action["action_name"] == "Signed In"
        assert action["request"]["time"].endswith("Z")
        assert len(action["transaction_id"]) == 36
    finally:
        agent.shutdown()
