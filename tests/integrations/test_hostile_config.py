"""Collector-supplied config and rules with wrong types at every level, served by the recording
collector and installed by a real fetch, then requests through the wrapped app: no request
fails, no exception escapes, none stalls, and the client gets what the bare app gives unless a
valid blocking rule answered for it (DESIGN 4: governance never raises into the request).

Requests run in the test's own thread (WSGI in-process, ASGI on an event loop here) so that a
stalled regular expression can be interrupted (tests/hostile.py ``no_stall``). Pathological
backtracking regexes have their own tests (test_hostile_trust.py, case 8); here the regexes
are broken, odd or huge, not slow.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from functools import partial
from typing import Any

import pytest

pytest.importorskip("httpx")

import httpx
from hypothesis import HealthCheck, Phase, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.hostile import (
    Stalled,
    _module_recorder,  # noqa: F401  (a fixture)
    call_wsgi,
    jwt,
    no_stall,
    recorder_fixture,  # noqa: F401  (the fixture "recorder": one server per module)
)
from tests.integrations.stacks import (
    APP,
    BASE_URL,
    CLIENT,
    Outcome,
    Stack,
    stack_fixture,  # noqa: F401  (the fixture "stack")
)
from tests.recorder import Answer, Recorder

BUDGET = 1.0  # seconds for one request; a stall is hours
USER_JWT = jwt({"sub": "user-1", "company": "company-1"})

# Values of every JSON type, odd ones included ----------------------------------------------------


class Huge(str):
    """A long string with a short repr (hypothesis prints failing examples)."""

    def __repr__(self) -> str:
        return f"'x' * {len(self)}"


class Deep(list):  # type: ignore[type-arg]
    def __repr__(self) -> str:
        return "Deep(400 nested lists)"


DEEP: Any = "bottom"
for _ in range(399):
    DEEP = [DEEP]
DEEP = Deep([DEEP])

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "100", "50", "-1", "1e999", "true", "null", "{{0}}"]),
    st.just(Huge("x" * 100_000)),
)
JUNK = st.one_of(
    st.recursive(
        SCALARS,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=6), children, max_size=3)
        ),
        max_leaves=6,
    ),
    st.just(DEEP),
)


def mostly(good: Any) -> Any:
    """``good`` three times in four, else junk: well-formed enough for rules to fire, odd
    enough at every level. (Not ``one_of(good, good, good, junk)``: its repr, which
    hypothesis builds, would grow threefold per level.)"""
    return st.integers(0, 3).flatmap(partial(_good_or_junk, good))


def _good_or_junk(good: Any, choice: int) -> Any:
    return JUNK if choice == 0 else good


MATCHING = st.sampled_from(
    ["^/items", ".", "^/", "^(GET|POST)$", "^203\\.0\\.113\\.9$", "^2", "some", "^noise$", "user"]
)
REGEXES = st.one_of(
    MATCHING,
    st.sampled_from(
        [
            "(",
            "[",
            "\\",
            "*",
            "a{2,1}",
            "(?P<x>a)(?P<x>b)",
            "(?<=a+)b",
            "(?i)^/ITEMS/",
            "^/items/(\\d+)$",
            "^/items/blocked$",
            "^GET$",
            "^(POST|GET)$",
            "^203\\.0\\.113\\.9$",
            "^2\\d\\d$",
            "^noise$",
            "",
            ".*",
            "^$",
            "(?x) ^ / items # comment",
            "\\p{L}",
            "é+",
            Huge("a" * 5_000),
        ]
    ),
    st.text(max_size=10),
)
PATHS = st.one_of(
    st.sampled_from(["request.verb", "request.route", "request.ip_address", "request.body.kind"]),
    st.sampled_from(
        [
            "request.verb",
            "request.route",
            "request.ip_address",
            "request.ip",
            "response.status",
            "request.headers.x-name",
            "request.headers.",
            "request.headers.Content-Type",
            "request.body.kind",
            "request.body.",
            "request.body.a.b.c",
            "request.body.0",
            "request.nothing",
            "response.headers.x",
            "user_id",
            "",
        ]
    ),
    st.text(max_size=12),
    JUNK,
)
CONDITION = mostly(st.fixed_dictionaries({"path": PATHS, "value": mostly(REGEXES)}))
GROUP = mostly(
    st.fixed_dictionaries(
        {"conditions": mostly(st.lists(CONDITION, min_size=1, max_size=2))},
        optional={"sample_rate": st.one_of(st.integers(-50, 150), st.floats(), JUNK)},
    )
)
REGEX_CONFIG = mostly(st.lists(GROUP, max_size=2))

HEADER_NAMES = st.one_of(
    st.sampled_from(
        [
            "X-Governed",
            "Content-Type",
            "Content-Length",
            "X-Moesif-Transaction-Id",
            "Set-Cookie",
            "X Bad",
            "X:Bad",
            "X-Ünïcode",
            "X-Split\r\nInjected",
            "",
        ]
    ),
    st.text(alphabet="abcdefghijkXYZ-_0123456789", min_size=1, max_size=10).map(lambda s: "X-" + s),
)
HEADER_VALUES = st.one_of(
    st.sampled_from(
        [
            "plain",
            "80% of quota used — upgrade",
            "a\r\nSet-Cookie: injected=1",
            "line\nbreak",
            "nul\x00byte",
            "{{0}} left",
            "\ud800",
        ]
    ),
    st.text(max_size=12),
    JUNK,
)
RESPONSE = mostly(
    st.fixed_dictionaries(
        {"headers": mostly(st.dictionaries(HEADER_NAMES, HEADER_VALUES, min_size=1, max_size=4))},
        optional={
            "status": st.one_of(
                st.sampled_from([403, 429]),
                st.sampled_from([200, 99, 600, 0, "429", "x", 10**20]),
                JUNK,
            ),
            "body": JUNK,
        },
    )
)
RULE = mostly(
    st.fixed_dictionaries(
        {
            "_id": mostly(st.sampled_from(["r1", "r2", "r3"])),
            "type": mostly(st.sampled_from(["regex", "regex", "user", "company"])),
            "response": RESPONSE,
            "block": mostly(st.booleans()),
        },
        optional={
            "applied_to": mostly(st.sampled_from(["matching", "not_matching"])),
            "applied_to_unidentified": mostly(st.booleans()),
            "regex_config": REGEX_CONFIG,
        },
    )
)
COHORTS = mostly(
    st.dictionaries(
        st.sampled_from(["user-1", "company-1", "", "UNKNOWN"]),
        st.one_of(
            st.lists(
                st.one_of(
                    st.fixed_dictionaries(
                        {"rules": st.one_of(st.sampled_from(["r1", "r2", "nope"]), JUNK)},
                        optional={"values": JUNK},
                    ),
                    JUNK,
                ),
                max_size=2,
            ),
            JUNK,
        ),
        max_size=2,
    )
)
CONFIG = mostly(
    st.fixed_dictionaries(
        {},
        optional={
            "sample_rate": st.one_of(st.integers(-1000, 10**20), st.floats(), JUNK),
            "regex_config": REGEX_CONFIG,
            "user_sample_rate": st.one_of(st.dictionaries(st.text(max_size=6), JUNK), JUNK),
            "company_sample_rate": st.one_of(st.dictionaries(st.text(max_size=6), JUNK), JUNK),
            "user_rules": COHORTS,
            "company_rules": COHORTS,
            "ip_addresses_blocked_by_name": JUNK,
        },
    )
)
RULES = mostly(st.lists(RULE, min_size=1, max_size=4))
DOCUMENT_BODIES = st.sampled_from([None, b"not json {", b"", b"\xff\xfe", b"[1, 2", b"NaN"])


# One request, in this thread ---------------------------------------------------------------------

REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("GET", "/items/7?q=1", {"X-Name": "some name", "Authorization": f"Bearer {USER_JWT}"}, b""),
    (
        "POST",
        "/items",
        {"Content-Type": "application/json", "Content-Length": "28"},
        b'{"kind": "noise", "n": [1]}\n',
    ),
    ("GET", "/items/blocked", {"X-Name": "é" * 3}, b""),
]


def send(
    stack: Stack, app: Any, method: str, target: str, headers: dict[str, str], body: bytes
) -> Outcome:
    if stack.kind == "wsgi":
        path, _, query = target.partition("?")
        got = call_wsgi(app, method, path, query=query, headers=headers, body=body)
        return Outcome(got.status, list(got.headers.items()), got.body)
    return asyncio.run(_asgi_send(app, method, target, headers, body))


async def _asgi_send(
    app: Any, method: str, target: str, headers: dict[str, str], body: bytes
) -> Outcome:
    transport = httpx.ASGITransport(app=app, client=(CLIENT, 50000))
    raw = {name: value.encode("latin-1") for name, value in headers.items()}
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        response = await client.request(method, target, headers=raw, content=body)
    return Outcome.of(response)


def _block_statuses(rules: Any) -> set[int]:
    """The statuses a blocking rule in ``rules`` could answer with."""
    statuses = set()
    if isinstance(rules, list):
        for rule in rules:
            if isinstance(rule, dict) and rule.get("block") is True:
                response = rule.get("response")
                status = response.get("status") if isinstance(response, dict) else None
                if isinstance(status, str) and status.isdigit():
                    status = int(status)
                if isinstance(status, int) and not isinstance(status, bool):
                    statuses.add(status)
    return statuses


_serial = itertools.count()


def _serve(recorder: Recorder, config: Any, rules: Any, raw: bytes | None) -> None:
    config_body = raw if raw is not None else json.dumps(config).encode()
    recorder.config_etag = f"fuzz-{next(_serial)}"
    recorder.get_answers["/v1/config"] = Answer(200, body=config_body)
    recorder.get_answers["/v1/rules"] = Answer(200, body=json.dumps(rules).encode())


@pytest.fixture
def expected(stack: Stack) -> list[Outcome]:
    """What the bare app answers to each of REQUESTS."""
    app, _ = stack.build(None)
    answers = [send(stack, app, *request) for request in REQUESTS]
    APP.reset()
    return answers


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stack", ["wsgi", "asgi"], indirect=True)
@hypothesis_settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: it costs seconds
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(config=CONFIG, rules=RULES, raw=DOCUMENT_BODIES)
@example(  # a valid blocking rule whose headers and body are odd
    config={},
    rules=[
        {
            "_id": "r1",
            "type": "regex",
            "block": True,
            "regex_config": [{"conditions": [{"path": "request.route", "value": "^/items/bl"}]}],
            "response": {
                "status": "429",
                "headers": {
                    "X-Quota": "80% of quota used — upgrade",
                    "X-Split": "a\r\nSet-Cookie: injected=1",
                    "X Bad": "v",
                    "X-List": [1, {"a": None}],
                    "X-Ok": "{{missing}}",
                },
                "body": {"nested": DEEP, "nan": float("nan"), "big": Huge("x" * 100_000)},
            },
        }
    ],
    raw=None,
)
@example(  # header rules with values of every type; sampling with rates out of range
    config={
        "sample_rate": 10**20,
        "regex_config": [
            {"conditions": [{"path": "request.body.kind", "value": "^noise$"}], "sample_rate": -5},
            {"conditions": [{"path": "request.verb", "value": 7}], "sample_rate": "50"},
        ],
        "user_sample_rate": {"user-1": float("inf")},
    },
    rules=[
        {
            "_id": "r2",
            "type": "regex",
            "response": {"headers": {"X-A": None, "X-B": 1.5, "X-C": True, "X-D": {"k": []}}},
        }
    ],
    raw=None,
)
@example(  # a cohort rule for the JWT's user, placeholders filled with odd values
    config={"user_rules": {"user-1": [{"rules": "r3", "values": {"0": ["x", None], "1": "\r\n"}}]}},
    rules=[
        {
            "_id": "r3",
            "type": "user",
            "block": True,
            "response": {"status": 403, "headers": {"X-Plan": "{{0}}{{1}}"}, "body": "{{0}}"},
        }
    ],
    raw=None,
)
@example(config={}, rules=[], raw=b"not json {")
def test_any_config_and_rules_from_the_collector_leave_requests_whole(
    stack: Stack,
    recorder: Recorder,
    expected: list[Outcome],
    config: Any,
    rules: Any,
    raw: bytes | None,
) -> None:
    recorder.server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
    _serve(recorder, config, rules, raw)
    app, agent = stack.build({**stack.settings, "application_id": f"fuzz-{next(_serial)}"})
    try:
        send(stack, app, "GET", "/health", {}, b"")  # wakes the worker: it fetches first
        assert agent.flush(timeout=10), "the worker did not survive installing this config"
        blockers = _block_statuses(rules)
        for request, bare in zip(REQUESTS, expected, strict=True):
            APP.reset()
            started = time.monotonic()
            try:
                with no_stall(BUDGET):
                    got = send(stack, app, *request)
            except Stalled:
                pytest.fail(f"{request[:2]} stalled")
            assert time.monotonic() - started < BUDGET
            assert got.error is None
            if APP.seen:  # the app answered: exactly as without the agent
                assert (got.status, got.body) == (bare.status, bare.body), request[:2]
                if len(got.headers) > len(bare.headers) + 1:  # + the transaction id
                    event("a rule added headers")
            else:  # a blocking rule answered
                assert got.status in blockers, (request[:2], got.status, blockers)
                event("a rule blocked")
        assert agent.flush(timeout=10)
    finally:
        agent.shutdown(timeout=2)
