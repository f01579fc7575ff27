"""Sampling (/v1/config) and governance (/v1/rules) decisions, table-driven."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from moesif_agent import Agent
from moesif_agent._conditions import MAX_PATTERN, RouteFilter, compile_group
from moesif_agent._exchange import HEADERS_PAIRS, Exchange
from moesif_agent._forwarding import Forwarding
from moesif_agent._options import DEFAULT_TRUSTED_PROXIES
from moesif_agent._policy import Policy, keeps

TRUSTED = Forwarding(DEFAULT_TRUSTED_PROXIES)


def exchange(
    *,
    method: str = "GET",
    path: str = "/items/1",
    headers: dict[str, str] | None = None,
    ip: str = "203.0.113.5",
    status: int | None = None,
    user: str | None = None,
    company: str | None = None,
    txid: str = "00000000-0000-4000-8000-000000000001",
) -> Exchange:
    ex = Exchange()
    ex.method = method
    ex.path = path
    ex.request_header_style = HEADERS_PAIRS
    ex.request_headers = list((headers or {}).items())
    ex.remote_addr = ip
    ex.status = status
    ex.user_id = user
    ex.company_id = company
    ex.transaction_id = txid
    return ex


def rate(config: Any, **ex: Any) -> float:
    return Policy(config, trusted=TRUSTED).sample_rate(exchange(**ex))


# Sampling ------------------------------------------------------------------------------------

PRECEDENCE = {
    "sample_rate": 50,
    "user_sample_rate": {"u1": 20, "42": 15},
    "company_sample_rate": {"c1": 30},
    "regex_config": [
        {"conditions": [{"path": "request.route", "value": "^/health"}], "sample_rate": 0},
        {
            "conditions": [
                {"path": "request.verb", "value": "POST"},
                {"path": "request.route", "value": "/orders"},
            ],
            "sample_rate": 5,
        },
    ],
}


@pytest.mark.parametrize(
    ("case", "ex", "expected"),
    [
        ("regex beats user", {"path": "/health/live", "user": "u1"}, 0),
        ("all conditions of an entry must match", {"method": "GET", "path": "/orders"}, 50),
        ("all conditions match", {"method": "POST", "path": "/orders/9", "user": "u1"}, 5),
        ("user beats company", {"user": "u1", "company": "c1"}, 20),
        ("company", {"user": "someone", "company": "c1"}, 30),
        ("integer-like ids compare as strings", {"user": "42"}, 15),
        ("default sample_rate", {"user": "nobody"}, 50),
    ],
)
def test_sampling_precedence(case: str, ex: dict[str, Any], expected: float) -> None:
    assert rate(PRECEDENCE, **ex) == expected, case


@pytest.mark.parametrize(
    ("path", "value", "ex", "matches"),
    [
        ("request.verb", "^DELETE$", {"method": "DELETE"}, True),
        ("request.verb", "^DELETE$", {"method": "GET"}, False),
        ("request.route", "/items/[0-9]+", {"path": "/v2/items/7"}, True),
        ("request.ip_address", r"^203\.0\.113\.", {"ip": "203.0.113.9"}, True),
        (
            "request.ip_address",
            r"^198\.51",
            {"ip": "10.0.0.1", "headers": {"X-Forwarded-For": "198.51.100.1"}},
            True,
        ),
        ("request.ip", r"^203\.", {"ip": "203.0.113.9"}, True),
        ("response.status", "^5", {"status": 503}, True),
        ("response.status", "^5", {"status": 200}, False),
        ("request.headers.x-tenant", "^acme$", {"headers": {"X-Tenant": "acme"}}, True),
        ("request.headers.X-Tenant", "^acme$", {"headers": {"x-tenant": "acme"}}, True),
        ("request.headers.x-tenant", "^acme$", {}, False),
    ],
)
def test_every_condition_path(path: str, value: str, ex: dict[str, Any], matches: bool) -> None:
    config = {
        "sample_rate": 100,
        "regex_config": [{"conditions": [{"path": path, "value": value}], "sample_rate": 7}],
    }
    assert rate(config, **ex) == (7 if matches else 100)


def test_body_conditions_match_json_fields_including_numbers_and_graphql() -> None:
    config = {
        "regex_config": [
            {
                "conditions": [{"path": "request.body.operationName", "value": "^GetUser$"}],
                "sample_rate": 3,
            },
            {"conditions": [{"path": "request.body.amount", "value": "^1000$"}], "sample_rate": 4},
        ]
    }
    policy = Policy(config, trusted=TRUSTED)
    graphql = exchange(method="POST")
    policy.begin(graphql, json.dumps({"operationName": "GetUser", "query": "{...}"}).encode())
    assert graphql.sample_rate == 3
    amount = exchange(method="POST")
    policy.begin(amount, b'{"amount": 1000}')
    assert amount.sample_rate == 4


@pytest.mark.parametrize(
    "bad_entry",
    [
        {"conditions": [{"path": "request.route", "value": "(unclosed"}], "sample_rate": 0},
        {"conditions": [{"path": "request.unknown.thing", "value": ".*"}], "sample_rate": 0},
        {"conditions": [{"path": "request.route"}], "sample_rate": 0},
        {"conditions": "not a list", "sample_rate": 0},
        {"conditions": [{"path": "request.route", "value": ".*"}], "sample_rate": "zero"},
        {"conditions": [], "sample_rate": 0},
        "not an object",
    ],
)
def test_entries_that_cannot_be_evaluated_never_match_and_do_not_force_100(
    bad_entry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = {
        "sample_rate": 40,
        "regex_config": [
            bad_entry,
            {"conditions": [{"path": "request.route", "value": "^/items"}], "sample_rate": 10},
        ],
    }
    assert rate(config, path="/items/1") == 10
    assert rate(config, path="/other") == 40
    assert "moesif-agent: config regex_config[0]" in caplog.text


@pytest.mark.parametrize(
    "config",
    [
        {"sample_rate": "fifty"},
        {"sample_rate": 150},
        {"sample_rate": None},
        {"user_sample_rate": ["u1"]},
        {"user_sample_rate": {"u1": "x"}},
        {"regex_config": {"not": "a list"}},
        {},
    ],
)
def test_malformed_config_values_fall_back_to_full_sampling(config: dict[str, Any]) -> None:
    assert rate(config, user="u1") == 100


def test_rates_zero_and_hundred_and_determinism() -> None:
    ids = [f"{n:08d}-0000-4000-8000-000000000000" for n in range(1000)]
    assert all(keeps(i, 100) for i in ids)
    assert not any(keeps(i, 0) for i in ids)
    first = [keeps(i, 37) for i in ids]
    assert first == [keeps(i, 37) for i in ids]  # the same id always gets the same answer
    assert 300 < sum(first) < 440


@pytest.mark.parametrize("sample_rate", [1, 10, 30, 50, 70])
def test_weights_of_kept_events_sum_to_the_request_count(sample_rate: int) -> None:
    agent = Agent(dry_run=True)
    agent.policy = Policy({"sample_rate": sample_rate})
    rng = random.Random(sample_rate)
    kept_weights = []
    requests = 20_000
    for _ in range(requests):
        ex = exchange(txid=f"{rng.getrandbits(128):032x}")
        if agent._sample(ex):
            kept_weights.append(ex.weight)
    assert abs(sum(kept_weights) - requests) <= 0.03 * requests
    assert (
        abs(len(kept_weights) - requests * sample_rate / 100) < 0.15 * requests * sample_rate / 100
    )
    # the reference agents' floor(100/rate) weight would be off by up to 30% (rate 30 -> 3)
    agent.shutdown()


def test_sampling_decided_before_the_app_skips_body_capture() -> None:
    policy = Policy(
        {
            "regex_config": [
                {"conditions": [{"path": "request.route", "value": "^/noisy"}], "sample_rate": 0}
            ]
        }
    )
    plan = policy.begin(exchange(path="/noisy/x"))
    assert plan is not None and plan.capture is False
    assert policy.begin(exchange(path="/fine")) is None
    depends_on_status = Policy(
        {
            "regex_config": [
                {"conditions": [{"path": "response.status", "value": "^2"}], "sample_rate": 0}
            ]
        }
    )
    assert depends_on_status.begin(exchange(path="/noisy/x")) is None  # decided at the end


# Governance ----------------------------------------------------------------------------------

SEED_RULE = {
    "_id": "64ca685a833073c6b41b15f3",
    "created_at": "2024-02-01T00:00:00.000",
    "name": "Block Free Users who Exceeded their Monthly Quota",
    "block": True,
    "type": "user",
    "variables": [
        {"name": "0", "path": "body.plan_name"},
        {"name": "1", "path": "body.quota_amount"},
    ],
    "regex_config": [],
    "response": {
        "status": 429,
        "headers": {"X-Rate-Limit-Month": "{{1}}"},
        "body": {
            "error_code": "too_many_requests",
            "message": "You exceeded your monthly quota of {{1}} for the {{0}} plan. "
            "Please upgrade your plan.",
        },
    },
}
SEED_CONFIG = {
    "user_rules": {
        "free-user": [{"rules": "64ca685a833073c6b41b15f3", "values": {"0": "Free", "1": 1000}}]
    }
}


def govern(rules: Any, config: Any = None, body: bytes | None = None, **ex: Any) -> Any:
    return Policy(config or {}, rules, trusted=TRUSTED).begin(exchange(**ex), body)


def test_the_seed_example_rule_blocks_with_its_variables() -> None:
    plan = govern([SEED_RULE], SEED_CONFIG, user="free-user")
    assert plan.block.status == 429
    assert plan.block.rule_id == "64ca685a833073c6b41b15f3"
    assert json.loads(plan.block.body) == {
        "error_code": "too_many_requests",
        "message": "You exceeded your monthly quota of 1000 for the Free plan. "
        "Please upgrade your plan.",
    }
    headers = dict(plan.block.headers)
    assert headers["X-Rate-Limit-Month"] == "1000"
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == str(len(plan.block.body))
    assert govern([SEED_RULE], SEED_CONFIG, user="paying-user") is None
    assert govern([SEED_RULE], SEED_CONFIG) is None  # unidentified: not applied_to_unidentified


def test_missing_values_become_unknown_at_any_depth_lists_included() -> None:
    rule = {
        **SEED_RULE,
        "response": {
            "status": 402,
            "headers": {"X-Plan": "{{0}}"},
            "body": {"errors": [{"detail": "plan {{0}}, quota {{9}}"}, ["{{1}}", 3]]},
        },
    }
    config = {"user_rules": {"u": [{"rules": rule["_id"], "values": {"0": "Pro", "1": 5}}]}}
    plan = govern([rule], config, user="u")
    assert json.loads(plan.block.body) == {
        "errors": [{"detail": "plan Pro, quota UNKNOWN"}, ["5", 3]]
    }


def regex_rule(
    rule_id: str,
    path: str,
    value: str,
    *,
    block: bool = True,
    status: int = 403,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "_id": rule_id,
        "type": "regex",
        "block": block,
        "regex_config": [{"conditions": [{"path": path, "value": value}]}],
        "response": {"status": status, "headers": headers or {}, "body": {"rule": rule_id}},
    }


def test_regex_rules_on_each_request_field() -> None:
    assert govern([regex_rule("r", "request.verb", "DELETE")], method="DELETE").block.status == 403
    assert govern([regex_rule("r", "request.route", "/admin")], path="/admin/x").block
    assert (
        govern([regex_rule("r", "request.route", "/admin")], path="/api/admin") is None
    )  # anchored
    assert govern([regex_rule("r", "request.ip_address", "203")], ip="203.0.113.1").block
    assert govern([regex_rule("r", "request.ip", "203")], ip="203.0.113.1").block
    assert govern([regex_rule("r", "request.headers.x-bot", "yes")], headers={"X-Bot": "yes"}).block
    body_rule = regex_rule("r", "request.body.operationName", "DeleteAll")
    assert govern([body_rule], body=b'{"operationName": "DeleteAll"}').block
    assert govern([body_rule], body=b'{"operationName": "Read"}') is None
    count_rule = regex_rule("r", "request.body.count", "^5$")
    assert govern([count_rule], body=b'{"count": 5}').block  # an integer field, no TypeError
    assert govern([regex_rule("r", "response.status", "5")], status=None) is None


def test_one_non_matching_rule_does_not_hide_the_others_and_order_does_not_matter() -> None:
    miss = regex_rule("miss", "request.route", "^/nothing")
    hit = regex_rule("hit", "request.route", "^/items")
    assert govern([miss, hit]).block.rule_id == "hit"
    assert govern([hit, miss]).block.rule_id == "hit"


def test_headers_of_every_matching_rule_merge_and_the_last_blocking_rule_answers() -> None:
    tag = regex_rule(
        "tag",
        "request.route",
        "^/items",
        block=False,
        headers={"X-Tag": "a", "X-Note": "kept value"},
    )
    first = regex_rule("first", "request.verb", "GET", status=401, headers={"X-Tag": "b"})
    user_rule = {
        "_id": "u-rule",
        "type": "user",
        "block": True,
        "response": {"status": 429, "headers": {"X-Quota": "{{q}}"}, "body": {"quota": "{{q}}"}},
    }
    config = {"user_rules": {"alice": [{"rules": "u-rule", "values": {"q": 10}}]}}
    plan = govern([user_rule, tag, first], config, user="alice")
    assert plan.block.rule_id == "u-rule"  # regex, then company, then user rules
    assert plan.block.status == 429
    headers = dict(plan.block.headers)
    assert headers["X-Tag"] == "b"  # later rules win
    assert headers["X-Note"] == "kept value"  # spaces in header values are preserved
    assert headers["X-Quota"] == "10"
    only_tag = govern([tag], path="/items/2")
    assert only_tag.block is None
    assert dict(only_tag.headers) == {"X-Tag": "a", "X-Note": "kept value"}


def test_company_rules_not_matching_and_unidentified() -> None:
    in_cohort = {
        "_id": "c-in",
        "type": "company",
        "block": True,
        "response": {"status": 402, "body": {}},
    }
    outside = {
        "_id": "c-out",
        "type": "company",
        "block": True,
        "applied_to": "not_matching",
        "response": {"status": 451, "body": {"why": "no contract"}},
    }
    anonymous = {
        "_id": "c-anon",
        "type": "company",
        "block": True,
        "applied_to_unidentified": True,
        "regex_config": [{"conditions": [{"path": "request.route", "value": "/private"}]}],
        "response": {"status": 401, "body": {"why": "sign in"}},
    }
    config = {"company_rules": {"acme": [{"rules": "c-in", "values": {}}, {"rules": "c-out"}]}}
    rules = [in_cohort, outside, anonymous]
    assert govern(rules, config, company="acme").block.rule_id == "c-in"
    assert govern(rules, config, company="globex").block.rule_id == "c-out"
    assert govern(rules, config, path="/private/x").block.rule_id == "c-anon"
    assert govern(rules, config, path="/public") is None


@pytest.mark.parametrize(
    "broken",
    [
        {"type": "regex", "block": True, "response": {"status": 403}},  # no _id
        {"_id": "x", "type": "sometimes", "block": True, "response": {"status": 403}},
        {
            "_id": "x",
            "type": "regex",
            "block": True,
            "regex_config": [{"conditions": [{"path": "request.route", "value": "(("}]}],
            "response": {"status": 403},
        },
        {"_id": "x", "type": "regex", "block": True, "response": {"status": 999}},
        {"_id": "x", "type": "regex", "block": True, "response": {"status": "teapot"}},
        {"_id": "x", "type": "regex", "block": True, "response": "not an object"},
        {"_id": "x", "type": "regex", "block": True, "response": {"status": 403, "headers": ["X"]}},
        {
            "_id": "x",
            "type": "regex",
            "block": True,
            "regex_config": "all",
            "response": {"status": 403},
        },
        "not a rule",
    ],
)
def test_malformed_rules_are_skipped_counted_and_never_raise(broken: Any) -> None:
    good = regex_rule("good", "request.route", "^/items")
    policy = Policy({}, [broken, good], trusted=TRUSTED)
    assert policy.governance.skipped == 1
    assert policy.begin(exchange()).block.rule_id == "good"


def test_a_cohort_entry_for_a_missing_rule_is_skipped_not_a_key_error() -> None:
    config = {
        "user_rules": {
            "bob": [
                {"rules": "deleted-rule", "values": {}},
                {"rules": SEED_RULE["_id"], "values": {"0": "Free", "1": 1}},
            ]
        }
    }
    plan = govern([SEED_RULE], config, user="bob")
    assert plan.block.rule_id == SEED_RULE["_id"]


def test_non_json_documents_are_rejected_as_a_whole() -> None:
    assert Policy({}, {"not": "a list"}, trusted=TRUSTED).trivial
    assert Policy({}, None, trusted=TRUSTED).trivial


def test_string_bodies_are_sent_as_text() -> None:
    rule = {
        "_id": "t",
        "type": "regex",
        "block": True,
        "response": {"status": 503, "body": "down for {{x}}"},
    }
    plan = govern([rule])
    assert plan.block.body == b"down for UNKNOWN"
    assert dict(plan.block.headers)["Content-Type"] == "text/plain; charset=utf-8"


def test_the_route_prefilter_never_changes_a_decision() -> None:
    rules = [regex_rule(f"r{n}", "request.route", f"^/r{n}/") for n in range(10)]
    rules.append(regex_rule("verb", "request.verb", "^PATCH$"))
    rules.append(
        {
            **regex_rule("user", "request.route", "^/u/"),
            "type": "user",
            "applied_to": "not_matching",
        }
    )
    config = {
        "regex_config": [
            {"conditions": [{"path": "request.route", "value": f"/s{n}/"}], "sample_rate": n}
            for n in range(10)
        ]
    }
    filtered = Policy(config, rules, trusted=TRUSTED)
    plain = Policy(config, rules, trusted=TRUSTED)
    plain.governance.filter.tests = []
    plain.sampling.filter.tests = []
    assert filtered.governance.filter.tests
    for path in ["/r3/x", "/r9/", "/x/r1/", "/u/1", "/s4/a", "/a/s7/b", "/none", "/"]:
        for method in ("GET", "PATCH"):
            a, b = (
                exchange(path=path, method=method, user="x"),
                exchange(path=path, method=method, user="x"),
            )
            plan_a, plan_b = filtered.begin(a), plain.begin(b)
            assert (plan_a and plan_a.block and plan_a.block.rule_id) == (
                plan_b and plan_b.block and plan_b.block.rule_id
            ), path
            assert filtered.sample_rate(a) == plain.sample_rate(b), path


def test_a_rule_cannot_set_the_servers_framing_or_connection_headers() -> None:
    headers = {
        "Transfer-Encoding": "chunked",
        "Connection": "close",
        "Content-Length": "1",
        "Host": "elsewhere",
        "Upgrade": "websocket",
        "Status": "200",
        "X-Kept": "yes",
    }
    plan = govern([regex_rule("r", "request.verb", "GET", block=False, headers=headers)])
    assert plan.headers == [("X-Kept", "yes")]


def nested(depth: int, leaf: Any = "x", *, kind: str = "list") -> Any:
    """``leaf`` inside ``depth`` lists (or objects), built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


# Past the interpreter's recursion limits: Python's (1,000), C's (10,000 in 3.13), the stack's.
ABSURD = 100_000


@pytest.mark.parametrize(
    ("case", "deep"),
    [
        (
            "body",
            {
                "_id": "deep",
                "type": "regex",
                "block": True,
                "response": {"status": 403, "body": nested(ABSURD)},
            },
        ),
        (
            "body of objects",
            {
                "_id": "deep",
                "type": "regex",
                "block": True,
                "response": {"status": 403, "body": nested(ABSURD, kind="dict")},
            },
        ),
        (
            # A placeholder found before the deep part: compiling stops looking there, but
            # filling it in walks every level, on the request thread, with its stack.
            "body with a placeholder first",
            {
                "_id": "deep",
                "type": "regex",
                "block": True,
                "response": {"status": 403, "body": {"a": "{{x}}", "b": nested(450)}},
            },
        ),
        (
            "condition value",
            {
                "_id": "deep",
                "type": "regex",
                "block": True,
                "regex_config": [
                    {"conditions": [{"path": "request.route", "value": nested(ABSURD)}]}
                ],
                "response": {"status": 403},
            },
        ),
        (
            "condition",
            {
                "_id": "deep",
                "type": "regex",
                "block": True,
                "regex_config": [{"conditions": [nested(ABSURD, kind="dict")]}],
                "response": {"status": 403},
            },
        ),
        (
            "header value",
            {
                "_id": "deep",
                "type": "regex",
                "response": {"status": 200, "headers": {"X-Deep": nested(ABSURD)}},
            },
        ),
        (
            "status",
            {"_id": "deep", "type": "regex", "block": True, "response": {"status": nested(ABSURD)}},
        ),
        ("_id", {"_id": nested(ABSURD), "type": "regex", "block": True}),
    ],
)
def test_a_rule_nested_absurdly_deep_is_skipped_and_logged_once(
    case: str, deep: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    good = regex_rule("good", "request.route", "^/items")
    for _ in range(2):  # the next refresh compiles it again: logged once all the same
        policy = Policy({"sample_rate": 0}, [deep, good], trusted=TRUSTED)
        assert policy.governance.skipped == 1, case
        assert policy.sampling.default == 0
        assert policy.begin(exchange(path="/items/1")).block.rule_id == "good"
        plan = policy.begin(exchange(path="/other"))
        assert plan is not None and plan.block is None
    logged = [r.getMessage() for r in caplog.records if "moesif-agent: rule " in r.getMessage()]
    assert logged and len(logged) == len(set(logged)), logged  # each said once, not per refresh
    assert {r.levelname for r in caplog.records} == {"WARNING"}


def test_response_bodies_nested_a_few_levels_still_work() -> None:
    body = {"errors": nested(20, {"detail": "quota {{q}}"})}
    rule = {
        "_id": "r",
        "type": "user",
        "block": True,
        "response": {"status": 429, "body": body},
    }
    config = {"user_rules": {"alice": [{"rules": "r", "values": {"q": 7}}]}}
    plan = govern([rule], config, user="alice")
    assert json.loads(plan.block.body) == {"errors": nested(20, {"detail": "quota 7"})}


def test_a_cohort_entry_nested_absurdly_deep_is_skipped() -> None:
    config = {
        "sample_rate": 0,
        "user_rules": {
            "bob": [nested(ABSURD, kind="dict"), {"rules": SEED_RULE["_id"], "values": {"1": 3}}]
        },
    }
    policy = Policy(config, [SEED_RULE], trusted=TRUSTED)
    assert policy.sampling.default == 0
    assert policy.begin(exchange(user="bob")).block.rule_id == SEED_RULE["_id"]


def test_the_route_filter_covers_many_rules_in_several_regexes() -> None:
    """Past one regex's length bound the filter is built in pieces, not switched off: many
    rules are when ruling them all out in one scan matters most."""
    routes = [f"^/api/v1/resource-number-{n:03d}/items/[0-9]+$" for n in range(60)]
    assert sum(len(r) for r in routes) > 2 * MAX_PATTERN
    groups = [
        compile_group({"conditions": [{"path": "request.route", "value": r}]}, "test", True)
        for r in routes
    ]
    route_filter = RouteFilter([g for g in groups if g is not None], anchored=True)
    assert len(route_filter.tests) >= 3
    assert route_filter.excludes("/health")
    assert not route_filter.excludes("/api/v1/resource-number-059/items/7")
    assert not route_filter.excludes("/api/v1/resource-number-000/items/1")
