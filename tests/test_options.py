from __future__ import annotations

import logging
from typing import Any

import pytest

from moesif_agent import Agent, Options
from moesif_agent._options import DEFAULT_TRUSTED_PROXIES


def test_defaults() -> None:
    options = Options(application_id="app")
    assert options.base_uri == "https://api.moesif.net"
    assert options.log_body is True
    assert options.batch_size == 100
    assert options.batch_max_time == 1.0
    assert options.event_queue_size == 10_000
    assert options.max_body_size == 100_000
    assert options.authorization_header_name == ("authorization",)
    assert options.trusted_proxies == DEFAULT_TRUSTED_PROXIES
    assert options.identify_user is None


def test_missing_application_id_says_how_to_set_it() -> None:
    with pytest.raises(ValueError, match=r"application_id=.*MOESIF_APPLICATION_ID"):
        Options()


def test_environment_is_read_and_explicit_values_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOESIF_APPLICATION_ID", "from-env")
    monkeypatch.setenv("MOESIF_BATCH_SIZE", "250")
    monkeypatch.setenv("MOESIF_LOG_BODY", "false")
    monkeypatch.setenv("MOESIF_BATCH_MAX_TIME", "0.5")
    monkeypatch.setenv("MOESIF_SKIP_METHODS", "OPTIONS, HEAD")
    options = Options()
    assert options.application_id == "from-env"
    assert options.batch_size == 250
    assert options.log_body is False
    assert options.batch_max_time == 0.5
    assert options.skip_methods == ("OPTIONS", "HEAD")
    explicit = Options(batch_size=100, log_body=True)
    assert explicit.batch_size == 100  # explicit beats the environment, even when default
    assert explicit.log_body is True


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOESIF_BATCH_SIZE", "lots")
    with pytest.raises(ValueError, match=r"batch_size \(from environment variable MOESIF_BATCH"):
        Options(application_id="app")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("batch_size", 0, "batch_size must be at least 1, got 0"),
        ("batch_size", "ten", "batch_size must be an integer"),
        ("batch_size", 2.5, "batch_size must be an integer"),
        ("batch_size", True, "batch_size must be an integer"),
        ("batch_max_time", -1, "batch_max_time must be at least"),
        ("log_body", "maybe", "log_body must be True or False"),
        ("base_uri", "api.moesif.net", "base_uri must be an http"),
        ("identify_user", "user_id", "identify_user must be a function or None"),
        ("trusted_proxies", ["not-an-ip"], "trusted_proxies entries must be IP addresses"),
        ("skip_paths", ["(unclosed"], "skip_paths entries must be regular expressions"),
        ("spool_dir", "/var/spool\0x", "spool_dir must be a directory path"),
        ("request_header_masks", 5, "request_header_masks must be a list of strings"),
        ("application_id", 12345, "application_id must be a string"),
    ],
)
def test_bad_values_raise_with_the_option_and_what_is_allowed(
    name: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Options(**{"application_id": "app", name: value})


def test_lists_accept_comma_separated_strings_and_become_tuples() -> None:
    options = Options(application_id="app", authorization_header_name="X-Api-Key, Authorization")
    assert options.authorization_header_name == ("X-Api-Key", "Authorization")
    assert Options(application_id="a", skip_paths=["^/health"]).skip_paths == ("^/health",)


def test_base_uri_trailing_slash_is_removed() -> None:
    assert Options(application_id="a", base_uri="http://127.0.0.1:8787/").base_uri == (
        "http://127.0.0.1:8787"
    )


def test_reference_uppercase_settings_are_accepted() -> None:
    def identify(app: object, environ: object, headers: object = None) -> str:
        return "u"

    options = Options.from_mapping(
        {
            "APPLICATION_ID": "app",
            "LOG_BODY": False,
            "BATCH_SIZE": 25,
            "EVENT_QUEUE_SIZE": 500,
            "EVENT_BATCH_TIMEOUT": 2,
            "BASE_URI": "http://127.0.0.1:8787",
            "IDENTIFY_USER": identify,
            "CAPTURE_OUTGOING_REQUESTS": True,
            "REQUEST_HEADER_MASKS": ["X-Secret"],
            "DEBUG": False,
        }
    )
    assert options.application_id == "app"
    assert options.log_body is False
    assert options.batch_size == 25
    assert options.event_queue_size == 500
    assert options.batch_max_time == 2.0
    assert options.base_uri == "http://127.0.0.1:8787"
    assert options.identify_user is identify
    assert options.capture_outgoing is True
    assert options.request_header_masks == ("X-Secret",)


def test_unknown_settings_raise_with_a_suggestion() -> None:
    with pytest.raises(ValueError, match=r"unknown moesif-agent option 'LOG_BODIES'.*'LOG_BODY'"):
        Options.from_mapping({"APPLICATION_ID": "app", "LOG_BODIES": True})
    with pytest.raises(ValueError, match="did you mean 'batch_size'"):
        Options.coerce({"application_id": "a", "batch_sise": 3})


def test_reference_only_settings_are_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        options = Options.from_mapping({"APPLICATION_ID": "app", "EVENT_WORKER_COUNT": 4})
    assert options.application_id == "app"
    assert "EVENT_WORKER_COUNT is not used" in caplog.text


def test_coerce_takes_options_mappings_and_overrides() -> None:
    base = Options(application_id="app")
    assert Options.coerce(base) is base
    assert Options.coerce(base, log_body=False).log_body is False
    assert Options.coerce({"APPLICATION_ID": "x"}, BATCH_SIZE=5).batch_size == 5
    assert Options.coerce(None, application_id="y").application_id == "y"
    with pytest.raises(TypeError, match=r"options must be a moesif_agent\.Options or a mapping"):
        Options.coerce("app-id")  # type: ignore[arg-type]


def test_overrides_of_options_read_reference_names_as_a_mapping_does() -> None:
    base = Options(application_id="app")
    local, remote = "http://127.0.0.1:8787", "http://127.0.0.1:9999"
    # An ignored reference setting is ignored, not a TypeError.
    assert Options.coerce(base, USE_CELERY=True, LOG_BODY=False).log_body is False
    # BASE_URI wins over the fallback LOCAL_MOESIF_BASEURL, whatever the order.
    for overrides in (
        {"BASE_URI": remote, "LOCAL_MOESIF_BASEURL": local},
        {"LOCAL_MOESIF_BASEURL": local, "BASE_URI": remote},
    ):
        assert Options.coerce(base, **overrides).base_uri == remote
        assert Options.from_mapping({"APPLICATION_ID": "app", **overrides}).base_uri == remote
    assert Options.coerce(base, LOCAL_MOESIF_BASEURL=local).base_uri == local


def test_options_are_frozen_and_hashable() -> None:
    options = Options(application_id="app", skip_methods=["OPTIONS"])
    with pytest.raises(AttributeError):
        options.log_body = False  # type: ignore[misc]
    assert hash(options) == hash(Options(application_id="app", skip_methods=("OPTIONS",)))


def test_agents_are_shared_per_options() -> None:
    one = Agent.shared(Options(application_id="shared-test", enabled=False))
    two = Agent.shared(Options(application_id="shared-test", enabled=False))
    three = Agent.shared(Options(application_id="other", enabled=False))
    assert one is two
    assert one is not three


def test_disabled_agent_needs_no_application_id_and_records_nothing() -> None:
    agent = Agent(enabled=False)
    agent.record({"request": {}})
    assert agent.stats()["captured"] == 0
    assert agent.flush(timeout=1)


def test_declarative_skip_rules() -> None:
    from werkzeug.test import Client

    from moesif_agent.integrations.wsgi import MoesifWSGIMiddleware

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = MoesifWSGIMiddleware(
        app,
        application_id="test-app",
        dry_run=True,
        skip_probe_paths=True,
        skip_paths=["^/internal/"],
        skip_methods=["options"],
    )
    client = Client(middleware)
    skipped = ("/health", "/healthz/", "/readyz", "/metrics", "/favicon.ico", "/internal/x")
    for path in skipped:
        assert client.get(path).data == b"ok"
    assert client.options("/items").data == b"ok"
    kept = ("/items", "/healthy-food", "/api/health")
    for path in kept:
        assert client.get(path).data == b"ok"
    agent = middleware.agent
    assert agent.flush(timeout=5)
    assert [e["request"]["uri"] for e in agent.dry_run_events] == [
        f"http://localhost{path}" for path in kept
    ]
    assert agent.stats()["skipped"] == 7
