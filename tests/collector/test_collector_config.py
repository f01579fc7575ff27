"""``/v1/config`` and ``/v1/rules``: served from files, ETags, changes picked up while running."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from moesif_agent.collector import LocalCollector
from moesif_agent.collector._watch import WatchError
from tests.collector.helpers import APP_ID, make_event, post

RULE = {
    "_id": "64ca685a833073c6b41b15f3",
    "name": "Block free users",
    "block": True,
    "type": "user",
    "regex_config": [],
    "response": {"status": 429, "headers": {}, "body": {"error": "quota"}},
}


# Regular expressions that re.compile refuses with OverflowError and RecursionError.
_HUGE_REPEAT = "a{99999999999}"
_DEEP = "(" * 1000 + ")" * 1000


def _condition(pattern: str) -> dict[str, str]:
    return {"path": "request.route", "value": pattern}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    config, rules = tmp_path / "config.json", tmp_path / "rules.json"
    config.write_text(json.dumps({"sample_rate": 50}))
    rules.write_text(json.dumps([RULE]))
    return config, rules


@pytest.fixture
def watched(files: tuple[Path, Path], tmp_path: Path) -> Iterator[httpx.Client]:
    config, rules = files
    with (
        LocalCollector(tmp_path / "c.db", config_path=config, rules_path=rules) as collector,
        httpx.Client(base_url=collector.url, headers={"X-Moesif-Application-Id": APP_ID}) as c,
    ):
        yield c


def _get(client: httpx.Client, path: str, etag: str | None = None) -> httpx.Response:
    return client.get(path, headers={"If-None-Match": etag} if etag else {})


def test_defaults(http: httpx.Client) -> None:
    config = http.get("/v1/config")
    rules = http.get("/v1/rules")

    assert config.status_code == 200
    assert config.json() == {"sample_rate": 100}
    assert rules.json() == []
    assert config.headers["content-type"] == "application/json"
    assert config.headers["ETag"].startswith('"')
    assert config.headers["ETag"] != rules.headers["ETag"]
    assert config.headers["X-Moesif-Config-ETag"] == rules.headers["X-Moesif-Config-ETag"]


def test_if_none_match_answers_304(http: httpx.Client) -> None:
    for path in ("/v1/config", "/v1/rules"):
        first = http.get(path)
        etag = first.headers["ETag"]

        for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            again = _get(http, path, header)
            assert again.status_code == 304
            assert again.content == b""
            assert again.headers["ETag"] == etag
            assert again.headers["X-Moesif-Config-ETag"] == first.headers["X-Moesif-Config-ETag"]
        assert _get(http, path, '"stale"').status_code == 200


def test_served_from_files(watched: httpx.Client) -> None:
    assert watched.get("/v1/config").json() == {"sample_rate": 50}
    assert watched.get("/v1/rules").json() == [RULE]


@pytest.mark.parametrize("which", ["config", "rules"])
def test_a_changed_file_changes_the_etags_without_a_restart(
    which: str, files: tuple[Path, Path], watched: httpx.Client
) -> None:
    path = files[0] if which == "config" else files[1]
    before = watched.get(f"/v1/{which}")
    write_before = post(watched, "/v1/events", make_event())
    assert write_before.headers["X-Moesif-Config-ETag"] == before.headers["X-Moesif-Config-ETag"]

    new: Any = {"sample_rate": 51} if which == "config" else []
    path.write_text(json.dumps(new))
    after = _get(watched, f"/v1/{which}", before.headers["ETag"])
    write_after = post(watched, "/v1/events", make_event())

    assert after.status_code == 200
    assert after.json() == new
    assert after.headers["ETag"] != before.headers["ETag"]
    assert after.headers["X-Moesif-Config-ETag"] != before.headers["X-Moesif-Config-ETag"]
    assert write_after.headers["X-Moesif-Config-ETag"] == after.headers["X-Moesif-Config-ETag"]


def test_same_content_keeps_the_etag(files: tuple[Path, Path], watched: httpx.Client) -> None:
    before = watched.get("/v1/config").headers["ETag"]
    files[0].write_text(json.dumps({"sample_rate": 50}, indent=2))
    assert watched.get("/v1/config").headers["ETag"] == before


@pytest.mark.parametrize(
    ("which", "content", "reason"),
    [
        ("config", "{not json", "is not valid JSON"),
        ("config", "[]", "must hold an object at the top level, not list"),
        ("rules", '{"rules": []}', "must hold an array at the top level, not dict"),
        ("rules", "", "is not valid JSON"),
        (
            "config",
            json.dumps(
                {"regex_config": [{"conditions": [_condition(_HUGE_REPEAT)], "sample_rate": 5}]}
            ),
            "is invalid: regex_config[0].conditions[0].value is not a valid regular expression",
        ),
        (
            "rules",
            json.dumps([{**RULE, "regex_config": [{"conditions": [_condition(_DEEP)]}]}]),
            "is invalid: [0].regex_config[0].conditions[0].value is not a valid regular",
        ),
    ],
)
def test_a_malformed_file_keeps_the_last_good_version_and_is_logged_once(
    which: str,
    content: str,
    reason: str,
    files: tuple[Path, Path],
    watched: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = files[0] if which == "config" else files[1]
    good = watched.get(f"/v1/{which}")

    with caplog.at_level(logging.WARNING, logger="moesif_agent.collector"):
        path.write_text(content)
        served = [watched.get(f"/v1/{which}") for _ in range(3)]

    assert all(r.content == good.content for r in served)
    assert all(r.headers["ETag"] == good.headers["ETag"] for r in served)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"{which} file {path}" in warnings[0]
    assert reason in warnings[0]
    assert "serving the last good version" in warnings[0]

    fixed: Any = {"sample_rate": 7} if which == "config" else [RULE, {**RULE, "_id": "other"}]
    path.write_text(json.dumps(fixed))
    assert watched.get(f"/v1/{which}").json() == fixed


def test_a_deleted_file_keeps_the_last_good_version(
    files: tuple[Path, Path], watched: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="moesif_agent.collector"):
        files[1].unlink()
        assert [watched.get("/v1/rules").json() for _ in range(3)] == [[RULE]] * 3
    files[1].write_text("[]")
    assert watched.get("/v1/rules").json() == []
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "is unreadable (No such file or directory); serving the last good version" in warning


@pytest.mark.parametrize(
    ("content", "message"),
    [("{", "is not valid JSON"), ("[]", "must hold an object at the top level")],
)
def test_a_malformed_file_at_startup_is_an_error(
    content: str, message: str, tmp_path: Path
) -> None:
    config = tmp_path / "config.json"
    config.write_text(content)
    with pytest.raises(WatchError, match=message):
        LocalCollector(config_path=config).start()
    with pytest.raises(WatchError, match="cannot read the rules file"):
        LocalCollector(rules_path=tmp_path / "missing.json").start()


BAD_FIELDS = [
    ("config", {"sample_rate": "50"}, "sample_rate must be an integer from 0 to 100"),
    (
        "config",
        {"sample_rate": 101},
        "sample_rate must be an integer from 0 to 100 (a percentage), not 101",
    ),
    ("config", {"user_sample_rate": {"u1": 1.5}}, "user_sample_rate.u1 must be an integer"),
    (
        "config",
        {
            "regex_config": [
                {"conditions": [{"path": "request.route", "value": "(bad"}], "sample_rate": 0}
            ]
        },
        "regex_config[0].conditions[0].value is not a valid regular expression",
    ),
    (
        "config",
        {"regex_config": [{"conditions": [_condition(_HUGE_REPEAT)], "sample_rate": 0}]},
        "regex_config[0].conditions[0].value is not a valid regular expression "
        "(the repetition number is too large)",
    ),
    (
        "config",
        {"regex_config": [{"conditions": [_condition(_DEEP)], "sample_rate": 0}]},
        "regex_config[0].conditions[0].value is not a valid regular expression "
        "(groups nested too deeply)",
    ),
    (
        "rules",
        [{**RULE, "regex_config": [{"conditions": [_condition("x{1,99999999999}")]}]}],
        "[0].regex_config[0].conditions[0].value is not a valid regular expression (the rep",
    ),
    (
        "rules",
        [{**RULE, "regex_config": [{"conditions": [_condition(_DEEP)]}]}],
        "[0].regex_config[0].conditions[0].value is not a valid regular expression (groups",
    ),
    ("config", {"regex_config": [{"conditions": []}]}, "regex_config[0].sample_rate must be"),
    (
        "config",
        {"user_rules": {"u1": [{"values": {}}]}},
        "user_rules.u1[0].rules must be a rule _id",
    ),
    ("rules", [{**RULE, "_id": ""}], "[0]._id must be a non-empty string"),
    ("rules", [RULE, RULE], f"[1]._id '{RULE['_id']}' is the _id of an earlier rule too"),
    ("rules", [{**RULE, "type": "ip"}], "[0].type must be one of regex, user, company, not 'ip'"),
    ("rules", [{**RULE, "block": "yes"}], "[0].block must be true or false, not a string"),
    (
        "rules",
        [{**RULE, "response": {"status": "429"}}],
        "[0].response.status must be an HTTP status (100-599), not a string",
    ),
    ("rules", [{**RULE, "response": None}], "[0].response is required when block is true"),
    ("rules", ["rule"], "[0] must be an object (a governance rule), not a string"),
]


@pytest.mark.parametrize(("which", "document", "message"), BAD_FIELDS)
def test_a_wrong_field_at_startup_names_the_file_and_the_field(
    which: str, document: Any, message: str, tmp_path: Path
) -> None:
    path = tmp_path / f"{which}.json"
    path.write_text(json.dumps(document))
    collector = LocalCollector(
        config_path=path if which == "config" else None,
        rules_path=path if which == "rules" else None,
    )
    with pytest.raises(WatchError) as raised:
        collector.start()
    assert str(raised.value).startswith(f"the {which} file {path} is invalid: {message}")


def test_a_wrong_field_on_reload_keeps_the_last_good_version_logged_once_per_version(
    files: tuple[Path, Path], watched: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    config = files[0]
    with caplog.at_level(logging.WARNING, logger="moesif_agent.collector"):
        config.write_text(json.dumps({"sample_rate": 500}))
        first = [watched.get("/v1/config").json() for _ in range(3)]
        config.write_text(json.dumps({"sample_rate": 50, "user_sample_rate": []}))
        second = [watched.get("/v1/config").json() for _ in range(3)]

    assert first == second == [{"sample_rate": 50}] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"config file {config} is invalid: sample_rate must be an integer from 0 to 100 "
        "(a percentage), not 500; serving the last good version",
        f"config file {config} is invalid: user_sample_rate must be an object of id -> "
        "sample rate, not an array; serving the last good version",
    ]
