"""The ``moesif-agent`` command: --version, ``check`` against a real collector on loopback, and
the one-line answers when an extra is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from moesif_agent import __version__, _cli, _demo
from tests.recorder import Answer, Recorder

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = _cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"], capsys) == (0, f"moesif-agent {__version__}\n", "")


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run([], capsys)
    assert code == 0
    for command in ("collector", "check", "demo", "--version"):
        assert command in out


# check -----------------------------------------------------------------------------------------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, recorder: Recorder) -> pytest.MonkeyPatch:
    monkeypatch.setenv("MOESIF_APPLICATION_ID", "app-id-under-test")
    monkeypatch.setenv("MOESIF_BASE_URI", recorder.url)
    return monkeypatch


def test_check_says_where_events_go_and_that_they_are_accepted(
    env: pytest.MonkeyPatch, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder.serve_config(
        {
            "sample_rate": 50,
            "regex_config": [
                {"conditions": [{"path": "request.route", "value": "^/h"}], "sample_rate": 0}
            ],
            "user_sample_rate": {"u1": 10},
        },
        [{"_id": "r1", "type": "regex", "block": False, "regex_config": [], "response": {}}],
    )
    code, out, err = run(["check"], capsys)
    assert (code, err) == (0, "")
    assert f"{recorder.url}  (from MOESIF_BASE_URI)" in out
    assert "app-…test  (from MOESIF_APPLICATION_ID)" in out
    assert f"events go to    {recorder.url}/v1/events/batch" in out
    assert "accepted (GET /v1/config: 200)" in out
    assert "sample rate 50%, 1 sampling rule, 1 user rate, 0 company rates" in out
    assert "1 governance rule" in out
    assert out.endswith(f"ok: events go to {recorder.url} and it accepts this application id\n")
    # With the application id the agent would send, and nothing posted or stored.
    assert {r.headers["x-moesif-application-id"] for r in recorder.iter_requests()} == {
        "app-id-under-test"
    }
    assert {(r.method, r.path) for r in recorder.iter_requests()} == {
        ("GET", "/v1/config"),
        ("GET", "/v1/rules"),
    }


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            Answer(401, body=b'{"message": "unknown application id"}'),
            "answered GET /v1/config with HTTP 401 (unknown application id): the collector "
            "does not know this application id: check application_id "
            "(app-…test, from MOESIF_APPLICATION_ID)",
        ),
        (Answer(404, body=b"not found"), "does not serve /v1/config (HTTP 404)"),
        (Answer(503), "answered GET /v1/config with HTTP 503"),
        (Answer(200, body=b"<html>"), "serves a /v1/config that is not a JSON object"),
    ],
)
def test_check_fails_with_one_line_saying_why(
    env: pytest.MonkeyPatch,
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    answer: Answer,
    reason: str,
) -> None:
    recorder.get_answers["/v1/config"] = answer
    recorder.get_answers["/v1/rules"] = Answer(200, body=b"[]")
    code, _, err = run(["check"], capsys)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("moesif-agent check: ")
    assert reason in err


@pytest.mark.parametrize(
    ("config", "says", "skipped"),
    [
        ({"user_sample_rate": 5}, "0 user rates", "config user_sample_rate: must be an object"),
        ({"user_sample_rate": [1, 2]}, "0 user rates", "config user_sample_rate: must be an"),
        ({"user_sample_rate": None}, "0 user rates", None),
        ({"user_sample_rate": "abc"}, "0 user rates", "config user_sample_rate: must be an"),
        (
            {"user_sample_rate": {"u1": "ten", "u2": 10}},
            "1 user rate,",
            "config user_sample_rate['u1']: sample rate must",
        ),
        ({"company_sample_rate": 5}, "0 company rates", "config company_sample_rate: must be"),
        ({"company_sample_rate": [{"c": 1}]}, "0 company rates", "config company_sample_rate"),
        ({"company_sample_rate": None}, "0 company rates", None),
        ({"sample_rate": "50"}, "sample rate 100%", "config sample_rate: sample rate must be"),
        ({"sample_rate": None}, "sample rate 100%", None),
        ({"regex_config": {"a": 1}}, "0 sampling rules", "config regex_config: must be a list"),
        ({"regex_config": [5, None]}, "0 sampling rules", "config regex_config[0]: "),
        ({"user_rules": 5}, "sample rate 100%", "config user_rules: must be an object"),
    ],
)
def test_check_of_an_odd_config_says_what_the_agent_makes_of_it(
    env: pytest.MonkeyPatch,
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    config: dict[str, object],
    says: str,
    skipped: str | None,
) -> None:
    # Configs the agent accepts, skipping what it cannot use: the check says what it would do.
    recorder.serve_config(config)
    code, out, err = run(["check"], capsys)
    assert (code, err) == (0, "")
    assert says in out
    assert ("skipped" in out) is (skipped is not None)
    if skipped is not None:
        assert f"  skipped         {skipped}" in out
    assert out.endswith("it accepts this application id\n")


def test_check_of_odd_rules_counts_what_the_agent_keeps(
    env: pytest.MonkeyPatch, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = {"_id": "r1", "type": "regex", "block": False, "regex_config": [], "response": {}}
    recorder.serve_config({}, [5, None, "x", {"_id": 1}, [], rule])
    code, out, err = run(["check"], capsys)
    assert (code, err) == (0, "")
    assert "1 governance rule (5 malformed, skipped by the agent)" in out


def test_check_lists_only_the_first_skipped_entries(
    env: pytest.MonkeyPatch, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder.serve_config({"user_sample_rate": {f"u{i}": "x" for i in range(50)}})
    code, out, _ = run(["check"], capsys)
    assert code == 0 and "0 user rates" in out
    assert out.count("  skipped ") == 11 and "and 40 more" in out
    recorder.serve_config({"user_sample_rate": {"u" * 10_000 + "\n": "x"}})
    code, out, _ = run(["check"], capsys)
    assert code == 0 and max(len(line) for line in out.splitlines()) < 300


@pytest.mark.parametrize(
    ("path", "answer", "reason"),
    [
        ("/v1/config", Answer(200, body=b"[" * 100_000), "/v1/config that is not a JSON object"),
        ("/v1/config", Answer(200, body=b"null"), "/v1/config that is not a JSON object"),
        ("/v1/config", Answer(200, body=b'"text"'), "/v1/config that is not a JSON object"),
        ("/v1/config", Answer(200, body=b"\xff\xfe"), "/v1/config that is not a JSON object"),
        ("/v1/rules", Answer(200, body=b"{}"), "/v1/rules that is not a JSON array"),
        ("/v1/rules", Answer(200, body=b"null"), "/v1/rules that is not a JSON array"),
        ("/v1/config", Answer(401, body=b"[1]"), "answered GET /v1/config with HTTP 401:"),
        ("/v1/config", Answer(403, body=b"null"), "answered GET /v1/config with HTTP 403:"),
        ("/v1/config", Answer(401, body=b'{"message": 5}'), "with HTTP 401: the collector"),
        ("/v1/config", Answer(401, body=b"[" * 100_000), "with HTTP 401: the collector"),
        (
            "/v1/config",
            Answer(401, body=b'{"message": "bad\\nid\\r\\nline"}'),
            "with HTTP 401 (bad id line): the collector",
        ),
        (
            "/v1/rules",
            Answer(500, body=b'{"error": ["x"]}'),
            "answered GET /v1/rules with HTTP 500",
        ),
    ],
)
def test_check_of_a_hostile_answer_fails_with_one_line(
    env: pytest.MonkeyPatch,
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    path: str,
    answer: Answer,
    reason: str,
) -> None:
    recorder.get_answers["/v1/config"] = Answer(200, body=b"{}")
    recorder.get_answers["/v1/rules"] = Answer(200, body=b"[]")
    recorder.get_answers[path] = answer
    code, _, err = run(["check"], capsys)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("moesif-agent check: ")
    assert reason in err


def test_check_as_a_command_keeps_the_agents_warnings_on_its_own_lines(
    env: pytest.MonkeyPatch, recorder: Recorder
) -> None:
    # Outside pytest nothing captures the agent's log: its warnings must not reach stderr.
    recorder.serve_config({"user_sample_rate": 5, "sample_rate": "50"})
    recorder.get_answers["/v1/rules"] = Answer(200, body=b'{"not": "a list"}')
    done = subprocess.run(
        [sys.executable, "-m", "moesif_agent", "check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "/v1/rules that is not a JSON array" in done.stderr
    recorder.serve_config({"user_sample_rate": 5, "sample_rate": "50"})
    done = subprocess.run(
        [sys.executable, "-m", "moesif_agent", "check"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, ""), done
    assert "sample rate 100%, 0 sampling rules, 0 user rates, 0 company rates" in done.stdout
    assert "  skipped         config user_sample_rate: must be an object" in done.stdout
    assert "  skipped         config sample_rate: sample rate must be a number" in done.stdout


def test_check_fails_when_nothing_listens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = Recorder()
    closed.stop()  # a port that was just free: connection refused
    monkeypatch.setenv("MOESIF_APPLICATION_ID", "app")
    code, _, err = run(["check", "--base-uri", closed.url, "--timeout", "2"], capsys)
    assert code == 1
    assert err.startswith(f"moesif-agent check: cannot reach the collector at {closed.url} (")


def test_check_flags_override_the_environment(
    env: pytest.MonkeyPatch, recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder.serve_config({"sample_rate": 100})
    code, out, _ = run(["check", "--application-id", "from-the-flag"], capsys)
    assert code == 0
    assert "from…flag  (from --application-id)" in out
    assert {r.headers["x-moesif-application-id"] for r in recorder.iter_requests()} == {
        "from-the-flag"
    }


def test_check_without_an_application_id_says_how_to_set_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(["check"], capsys)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "set MOESIF_APPLICATION_ID" in err


def test_check_of_a_bad_option_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MOESIF_APPLICATION_ID", "app")
    monkeypatch.setenv("MOESIF_BASE_URI", "api.moesif.net")
    code, _, err = run(["check"], capsys)
    assert code == 2 and "base_uri must be an http(s) URL" in err


def test_check_of_a_disabled_or_dry_run_agent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MOESIF_DRY_RUN", "true")
    code, out, _ = run(["check"], capsys)
    assert code == 0 and "kept in memory (dry_run=True)" in out
    monkeypatch.setenv("MOESIF_ENABLED", "false")
    code, _, err = run(["check"], capsys)
    assert code == 1 and "the agent is disabled (from MOESIF_ENABLED" in err


# Missing extras --------------------------------------------------------------------------------


def test_demo_without_its_extra_says_which_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_demo, "DEMO_MODULES", ("json", "no_such_server_module"))
    code, out, err = run(["demo"], capsys)
    assert (code, out) == (2, "")
    assert err == (
        "moesif-agent demo needs the [demo] extra (missing: no_such_server_module); "
        "install it with: pip install 'moesif-agent[demo]'\n"
    )


def test_collector_without_its_extra_says_which_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m.startswith("moesif_agent.collector")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    code, out, err = run(["collector"], capsys)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "missing: uvicorn" in err and "pip install 'moesif-agent[collector]'" in err


# make demo -------------------------------------------------------------------------------------


def test_make_demo_installs_only_what_the_demo_runs(tmp_path: Path) -> None:
    """``make -n`` prints the commands: the demo's venv gets the [demo] extra, no dev tools."""
    done = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "demo", f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        check=True,
    )
    installs = [line for line in done.stdout.splitlines() if " install " in line]
    assert any("-e '.[demo]'" in line for line in installs), done.stdout
    assert not any("dev" in line for line in installs), done.stdout
    tomllib = pytest.importorskip("tomllib")
    with (ROOT / "pyproject.toml").open("rb") as file:
        demo = tomllib.load(file)["project"]["optional-dependencies"]["demo"]
    tools = ("pytest", "mypy", "ruff", "playwright", "hypothesis")
    assert not [requirement for requirement in demo if requirement.startswith(tools)]
