"""The Django middleware: test Client and AsyncClient, RequestFactory, and Django's real WSGI
and ASGI handlers, against the recording collector."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import wsgiref.util
from collections.abc import Callable, Iterator
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.conf import settings as django_settings

if not django_settings.configured:  # the project's own settings come per test (Project)
    django_settings.configure(
        SECRET_KEY="moesif-agent-tests", USE_TZ=True, DATABASES={}, INSTALLED_APPS=[]
    )
django.setup()

import httpx
from asgiref.sync import iscoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpResponse
from django.test import AsyncClient, Client, RequestFactory, override_settings

from moesif_agent import _guard
from moesif_agent._exchange import Body
from moesif_agent.integrations._tee import InputTee
from moesif_agent.integrations.django import MoesifMiddleware
from tests.integrations.django_test_project import middleware as fake_auth
from tests.integrations.django_test_project.views import STATE
from tests.recorder import Recorder

MOESIF = "moesif_agent.integrations.django.MoesifMiddleware"
FAKE_AUTH = "tests.integrations.django_test_project.middleware.FakeAuthMiddleware"
PROJECT = {
    "ROOT_URLCONF": "tests.integrations.django_test_project.urls",
    "ALLOWED_HOSTS": ["*"],
    "DEBUG": False,
    "DEBUG_PROPAGATE_EXCEPTIONS": False,
    "DATA_UPLOAD_MAX_MEMORY_SIZE": 20_000,
    "MIDDLEWARE": [MOESIF, FAKE_AUTH],
    "MOESIF": None,
    "MOESIF_MIDDLEWARE": None,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Project:
    """The test project's settings, with the agent's options pointed at the recorder."""

    def __init__(self, settings: dict[str, Any], recorder: Recorder) -> None:
        self.settings = settings
        self.recorder = recorder
        self._override: Any = None
        self.configure()

    def configure(
        self, *, legacy: bool = False, middleware: list[str] | None = None, **options: Any
    ) -> Project:
        """Apply the project settings; ``options`` go to settings.MOESIF (or, with
        ``legacy``, to settings.MOESIF_MIDDLEWARE with the reference agent's UPPERCASE keys)."""
        self.stop()
        values: dict[str, Any] = {**PROJECT}
        if middleware is not None:
            values["MIDDLEWARE"] = middleware
        moesif = {**self.settings, **options}
        if legacy:
            values["MOESIF_MIDDLEWARE"] = {key.upper(): value for key, value in moesif.items()}
        else:
            values["MOESIF"] = moesif
        self._override = override_settings(**values)
        self._override.enable()
        return self

    def stop(self) -> None:
        if self._override is not None:
            self._override.disable()
            self._override = None

    @property
    def agent(self) -> Any:
        # A middleware built from the same settings shares the project's agent.
        return MoesifMiddleware(_unused).agent

    def events(self) -> list[dict[str, Any]]:
        assert self.agent.flush(timeout=10)
        return self.recorder.events()

    def event(self) -> dict[str, Any]:
        (event,) = self.events()
        return event


def _unused(request: Any) -> Any:
    raise AssertionError("not called")


@pytest.fixture
def project(settings: dict[str, Any], recorder: Recorder) -> Iterator[Project]:
    STATE.reset()
    fake_auth.LOADS.clear()
    p = Project(settings, recorder)
    yield p
    p.stop()


def b64(data: str) -> bytes:
    return base64.b64decode(data)


# The basics ------------------------------------------------------------------------------------


def test_get_is_recorded_with_every_field(project: Project) -> None:
    project.configure(api_version="2.1")
    response = Client().get(
        "/items/7?q=1",
        headers={"Accept": "application/json", "X-Trace": "abc"},
        REMOTE_ADDR="203.0.113.9",
    )
    assert response.status_code == 200
    txid = response.headers["X-Moesif-Transaction-Id"]
    assert len(txid) == 36 and STATE.seen["txid"] == txid
    event = project.event()
    assert event["transaction_id"] == txid
    request, reply = event["request"], event["response"]
    assert request["uri"] == "http://testserver/items/7?q=1"
    assert request["verb"] == "GET"
    assert request["api_version"] == "2.1"
    assert request["ip_address"] == "203.0.113.9"
    assert request["headers"]["Accept"] == "application/json"
    assert request["headers"]["X-Trace"] == "abc"
    assert request["headers"]["X-Moesif-Transaction-Id"] == txid
    assert "body" not in request
    assert reply["status"] == 200
    assert reply["headers"]["Content-Type"] == "application/json"  # the usual case
    assert reply["headers"]["X-Moesif-Transaction-Id"] == txid
    assert reply["body"] == {"id": 7, "name": "item 7"}
    assert event["metadata"]["route"] == "/items/<int:item_id>"


def test_an_incoming_transaction_id_is_reused_and_can_be_disabled(project: Project) -> None:
    response = Client().get(
        "/items/1", headers={"X-Moesif-Transaction-Id": "5b0c1f7e-8d2a-4c6b-9e1f-3a7d2c9b4e10"}
    )
    assert response.headers["X-Moesif-Transaction-Id"] == "5b0c1f7e-8d2a-4c6b-9e1f-3a7d2c9b4e10"
    assert STATE.seen["txid"] == "5b0c1f7e-8d2a-4c6b-9e1f-3a7d2c9b4e10"
    assert project.event()["transaction_id"] == "5b0c1f7e-8d2a-4c6b-9e1f-3a7d2c9b4e10"

    project.recorder.received.clear()
    project.configure(disable_transaction_id=True)
    response = Client().get("/items/1")
    assert "X-Moesif-Transaction-Id" not in response.headers
    assert STATE.seen["txid"] is None
    assert len(project.event()["transaction_id"]) == 36


def test_script_name_regex_routes_and_a_host_django_would_refuse(project: Project) -> None:
    with override_settings(ALLOWED_HOSTS=["only.example"]):
        response = Client().get("/items/3", SCRIPT_NAME="/api", HTTP_HOST="evil.example")
    assert response.status_code == 200  # the agent never calls request.get_host()
    Client().get("/legacy/abc")
    first, second = project.events()
    assert first["request"]["uri"] == "http://evil.example/api/items/3"
    assert first["metadata"]["route"] == "/api/items/<int:item_id>"
    assert second["metadata"]["route"] == "/legacy/(?P<slug>[a-z]+)$"


BINARY = bytes(range(256)) * 4


@pytest.mark.parametrize(
    ("path", "content_type", "payload", "expected", "status"),
    [
        (
            "/echo",
            "application/json",
            b'{"name": "w", "n": [1, 2]}',
            {"name": "w", "n": [1, 2]},
            201,
        ),
        ("/echo", "text/plain", "déjà".encode(), base64.b64encode("déjà".encode()).decode(), 201),
        ("/form", "application/x-www-form-urlencoded", b"a=1&b=two", "YT0xJmI9dHdv", 200),
    ],
    ids=["json", "text", "form"],
)
def test_request_bodies_are_teed_as_the_view_reads_them(
    project: Project, path: str, content_type: str, payload: bytes, expected: Any, status: int
) -> None:
    response = Client().post(path, data=payload, content_type=content_type)
    assert response.status_code == status
    event = project.event()
    assert event["request"]["body"] == expected
    if path == "/form":
        assert response.json() == {"a": "1", "b": "two"}
    else:
        assert response.content == payload
        assert event["response"]["body"] == expected


def test_a_binary_body_is_teed_whole_and_sent_as_a_note(project: Project) -> None:
    response = Client().post("/echo", data=BINARY, content_type="application/octet-stream")
    assert response.content == BINARY
    event = project.event()
    for part in ("request", "response"):
        assert "body" not in event[part]
        note = event["metadata"]["_moesif"][f"{part}_body"]
        assert note == {"omitted": "binary body not inspected", "size": len(BINARY)}


def test_a_body_read_piecewise_reaches_the_view_whole(project: Project) -> None:
    data = b"abcdef\nline two\nthe rest"
    response = Client().post("/chunks", data=data, content_type="text/plain")
    assert response.content == b"abc|def\n|line two\n|the rest"
    assert b64(project.event()["request"]["body"]) == data


def test_an_upload_bigger_than_data_upload_max_memory_size_still_succeeds(
    project: Project,
) -> None:
    project.configure(max_body_size=4000)
    upload = io.BytesIO(b"u" * 100_000)
    upload.name = "big.bin"
    response = Client().post("/upload", {"title": "big", "file": upload})
    assert response.status_code == 200
    assert response.json() == {"files": {"file": 100_000}, "fields": {"title": "big"}}
    event = project.event()
    captured = b64(event["request"]["body"])
    assert len(captured) == 4000 and b'name="title"' in captured
    note = event["metadata"]["_moesif"]["request_body"]
    assert note["truncated"] is True and note["size"] > 100_000


def test_data_upload_max_memory_size_rejects_exactly_as_without_the_agent(
    project: Project,
) -> None:
    too_big, fits = b"x" * 30_000, b"x" * 20_000
    statuses = []
    for middleware in ([MOESIF, FAKE_AUTH], [FAKE_AUTH]):
        project.configure(middleware=middleware)
        client = Client(raise_request_exception=False)
        statuses.append(client.post("/echo", data=too_big, content_type="text/plain").status_code)
        statuses.append(client.post("/echo", data=fits, content_type="text/plain").status_code)
    assert statuses == [400, 201, 400, 201]


def test_log_body_false_and_raising_callbacks(project: Project) -> None:
    def broken(request: Any, response: Any) -> str:
        raise RuntimeError("callback bug")

    project.configure(log_body=False, identify_user=broken, skip=broken, get_metadata=broken)
    response = Client().post("/echo", data=b'{"a": 1}', content_type="application/json")
    assert response.content == b'{"a": 1}'
    event = project.event()
    assert "body" not in event["request"] and "body" not in event["response"]
    assert "user_id" not in event and event["metadata"] == {"route": "/echo"}


def test_not_found_and_exceptions(project: Project) -> None:
    client = Client(raise_request_exception=False)
    assert client.get("/nope").status_code == 404
    assert client.get("/error").status_code == 500  # Django turned the exception into a 500
    with override_settings(DEBUG_PROPAGATE_EXCEPTIONS=True):
        with pytest.raises(RuntimeError, match="on purpose"):
            client.get("/error")  # the exception left get_response: recorded, then re-raised
    missing, converted, propagated = project.events()
    assert missing["response"]["status"] == 404
    assert "route" not in missing.get("metadata", {})
    assert converted["response"]["status"] == 500
    assert converted["metadata"]["route"] == "/error"
    assert converted["metadata"]["_moesif"]["error"] == {
        "class": "RuntimeError",
        "message": "the view failed on purpose",
    }
    assert propagated["response"]["status"] == 500
    assert propagated["metadata"]["_moesif"]["error"]["class"] == "RuntimeError"


def test_response_headers_keep_their_case_and_cookies_are_masked(project: Project) -> None:
    response = Client().get("/cookies")
    assert response.cookies["sessionid"].value == "secret-session-value"
    headers = project.event()["response"]["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Moesif-Transaction-Id"] == response.headers["X-Moesif-Transaction-Id"]
    cookie = headers["Set-Cookie"]
    assert "sessionid=[REDACTED]" in cookie and "theme=[REDACTED]" in cookie
    assert "secret-session-value" not in json.dumps(headers)


def test_skip_rules_and_the_skip_callback_seeing_the_response(project: Project) -> None:
    seen: list[Any] = []

    def skip(request: Any, response: Any) -> bool:
        seen.append(response.status_code)
        return request.path == "/items/2"

    project.configure(skip=skip, skip_paths=[r"^/items/3$"])
    client = Client()
    for n in (1, 2, 3):
        assert client.get(f"/items/{n}").status_code == 200
    (event,) = project.events()
    assert event["request"]["uri"].endswith("/items/1")
    assert seen == [200, 200]  # the declarative rule skipped /items/3 before the view
    assert project.agent.stats()["skipped"] == 2


# Streaming -------------------------------------------------------------------------------------


def test_streaming_sync_first_chunk_before_the_second_is_produced(project: Project) -> None:
    response = Client().get("/stream")
    assert response.streaming
    chunks = iter(response.streaming_content)
    assert next(chunks) == b"data: 1\n\n"
    assert STATE.produced == [1]  # the client has chunk one; chunk two does not exist yet
    assert project.recorder.events() == []
    assert list(chunks) == [b"data: 2\n\n", b"data: 3\n\n"]
    event = project.event()
    assert b64(event["response"]["body"]) == b"data: 1\n\ndata: 2\n\ndata: 3\n\n"
    assert event["response"]["headers"]["Content-Type"] == "text/event-stream"
    assert "_moesif" not in event.get("metadata", {})


@pytest.mark.anyio
async def test_streaming_async_first_chunk_before_the_second_is_produced(
    project: Project,
) -> None:
    STATE.gate = asyncio.Event()
    response = await AsyncClient().get("/async/stream")
    chunks = aiter(response.streaming_content)
    assert await anext(chunks) == b"data: 1\n\n"
    assert STATE.produced == [1]
    STATE.gate.set()
    assert [chunk async for chunk in chunks] == [b"data: 2\n\n"]
    event = project.event()
    assert b64(event["response"]["body"]) == b"data: 1\n\ndata: 2\n\n"
    assert event["metadata"]["route"] == "/async/stream"


def wsgi_call(handler: Any, path: str, **environ: Any) -> tuple[str, list[Any], Any]:
    env: dict[str, Any] = {"PATH_INFO": path, **environ}
    wsgiref.util.setup_testing_defaults(env)
    started: list[Any] = []

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return lambda data: None

    result = handler(env, start_response)
    return started[0], started[1], result


def test_wsgi_file_wrapper_is_passed_through_and_recorded_at_close(project: Project) -> None:
    handler = WSGIHandler()
    _, _, result = wsgi_call(handler, "/file", **{"wsgi.file_wrapper": wsgiref.util.FileWrapper})
    assert isinstance(result, wsgiref.util.FileWrapper)  # still sendfile-able
    assert b"".join(result) == b"file-bytes " * 100
    assert project.recorder.events() == []
    result.close()
    event = project.event()
    assert event["response"]["status"] == 200
    assert "body" not in event["response"]
    assert event["metadata"]["_moesif"]["response_body"] == {"omitted": "file response"}


def test_file_response_without_file_wrapper_is_teed(project: Project) -> None:
    response = Client().get("/file")
    assert b"".join(response.streaming_content) == b"file-bytes " * 100
    assert b64(project.event()["response"]["body"]) == b"file-bytes " * 100


def test_a_stream_closed_early_is_recorded_as_aborted(project: Project) -> None:
    status, _, result = wsgi_call(WSGIHandler(), "/stream")
    assert status == "200 OK"
    assert next(iter(result)) == b"data: 1\n\n"
    result.close()  # the client went away
    event = project.event()
    assert event["metadata"]["_moesif"]["aborted"]
    assert b64(event["response"]["body"]) == b"data: 1\n\n"


# Identity and callbacks ------------------------------------------------------------------------


def test_a_user_the_view_loaded_then_the_authorization_header(project: Project) -> None:
    client = Client()
    assert client.get("/whoami", headers={"X-Test-User": "alice"}).json() == {"user": "alice"}
    basic = "Basic " + base64.b64encode(b"bob:secret").decode()
    # The view never touched request.user: loading it would be a query the app did not make.
    client.get("/items/1", headers={"X-Test-User": "carol", "Authorization": basic})
    client.get("/items/1", headers={"Authorization": basic})  # anonymous: the header decides
    users = [event.get("user_id") for event in project.events()]
    assert users == ["alice", "bob", "bob"]
    assert fake_auth.LOADS == ["user"]  # only the view's own load


@pytest.mark.anyio
async def test_async_the_agent_never_loads_the_user(project: Project) -> None:
    response = await AsyncClient().get("/async/noop", headers={"X-Test-User": "alice"})
    assert response.status_code == 200
    assert fake_auth.LOADS == []
    assert "user_id" not in project.event()


def test_callbacks_get_request_and_response_once_each(project: Project) -> None:
    calls: list[tuple[str, str, str]] = []

    def callback(name: str, result: Any) -> Callable[[Any, Any], Any]:
        def call(request: Any, response: Any) -> Any:
            calls.append((name, type(request).__name__, type(response).__name__))
            return result

        return call

    project.configure(
        identify_user=callback("user", "u-1"),
        identify_company=callback("company", "c-1"),
        get_session_token=callback("session", "s-1"),
        get_metadata=callback("metadata", {"plan": "pro"}),
        skip=callback("skip", False),
    )
    Client().get("/items/1", headers={"X-Test-User": "alice"})
    event = project.event()
    assert (event["user_id"], event["company_id"], event["session_token"]) == ("u-1", "c-1", "s-1")
    assert event["metadata"]["plan"] == "pro"
    assert sorted(calls) == sorted(
        (name, "WSGIRequest", "JsonResponse")
        for name in ("user", "company", "session", "metadata", "skip")
    )
    assert fake_auth.LOADS == []  # identify_user answered: request.user was not needed


@pytest.mark.anyio
async def test_async_callbacks_may_be_coroutines(project: Project) -> None:
    calls: list[str] = []

    async def identify_user(request: Any, response: Any) -> str:
        calls.append(f"user {response.status_code}")
        return "u-async"

    def get_metadata(request: Any, response: Any) -> dict[str, Any]:
        calls.append(f"metadata {type(request).__name__}")
        return {"async": True}

    project.configure(identify_user=identify_user, get_metadata=get_metadata)
    await AsyncClient().get("/async/items/4")
    event = project.event()
    assert event["user_id"] == "u-async" and event["metadata"]["async"] is True
    assert calls == ["user 200", "metadata ASGIRequest"]


# Governance -----------------------------------------------------------------------------------
# The policy comes the way it does in production: the recorder serves /v1/config and /v1/rules,
# one request starts the agent, and its worker fetches both before it answers a flush.

WARM_UP = "/warm-up"  # no such route: a 404 whose only purpose is to start the agent


def _serve_rules(project: Project, config: Any, rules: Any, **options: Any) -> None:
    project.recorder.serve_config(config, rules)
    project.configure(**options)
    Client().get(WARM_UP)
    _forget_warm_up(project)


async def _aserve_rules(project: Project, config: Any, rules: Any, **options: Any) -> None:
    project.recorder.serve_config(config, rules)
    project.configure(**options)
    await AsyncClient().get(WARM_UP)
    _forget_warm_up(project)


def _forget_warm_up(project: Project) -> None:
    assert project.agent.flush(timeout=10)  # config and rules are fetched first
    project.recorder.received.clear()


QUOTA_RULES = [
    {
        "_id": "rule-1",
        "type": "user",
        "block": True,
        "response": {
            "status": 429,
            "headers": {"X-Rule": "quota"},
            "body": {"error": "over quota"},
        },
    }
]
QUOTA_CONFIG = {"user_rules": {"blocked-user": [{"rules": "rule-1", "values": {}}]}}


def _identify_calls() -> tuple[list[Any], Callable[[Any, Any], str | None]]:
    calls: list[Any] = []

    def identify_user(request: Any, response: Any) -> str | None:
        if request.path == WARM_UP:
            return None
        calls.append(response)
        return "blocked-user"

    return calls, identify_user


def _assert_blocked(project: Project, response: Any, calls: list[Any]) -> None:
    assert response.status_code == 429
    assert response.json() == {"error": "over quota"}
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Rule"] == "quota"
    assert response.headers["X-Moesif-Transaction-Id"]
    assert STATE.calls == 0  # the view never ran
    assert calls == [None]  # identified once, before the view
    event = project.event()
    assert event["blocked_by"] == "rule-1"
    assert event["user_id"] == "blocked-user"
    assert event["response"]["status"] == 429
    assert event["response"]["body"] == {"error": "over quota"}
    assert project.agent.stats()["blocked"] == 1


def test_a_blocking_rule_answers_without_calling_the_view(project: Project) -> None:
    calls, identify_user = _identify_calls()
    _serve_rules(project, QUOTA_CONFIG, QUOTA_RULES, identify_user=identify_user)
    _assert_blocked(project, Client().get("/items/1"), calls)


@pytest.mark.anyio
async def test_a_blocking_rule_answers_without_calling_the_async_view(project: Project) -> None:
    calls, identify_user = _identify_calls()
    await _aserve_rules(project, QUOTA_CONFIG, QUOTA_RULES, identify_user=identify_user)
    _assert_blocked(project, await AsyncClient().get("/async/items/1"), calls)


HEADER_RULES = [
    {
        "_id": "quota-headers",
        "type": "regex",
        "block": False,
        "regex_config": [{"conditions": [{"path": "request.route", "value": "^/echo$"}]}],
        "response": {"headers": {"X-Quota-Remaining": "5"}},
    }
]
# Requests marked "X-Sample: none" are sampled out before the view runs: capture is turned off.
DROP_CONFIG = {
    "regex_config": [
        {"conditions": [{"path": "request.headers.x-sample", "value": "^none$"}], "sample_rate": 0}
    ]
}


def test_rule_headers_are_added_and_capture_can_be_turned_off(project: Project) -> None:
    _serve_rules(project, DROP_CONFIG, HEADER_RULES)
    response = Client().post("/echo", data=b'{"a": 1}', content_type="application/json")
    assert response.headers["X-Quota-Remaining"] == "5"
    event = project.event()
    assert event["response"]["headers"]["X-Quota-Remaining"] == "5"
    assert event["request"]["body"] == {"a": 1}
    # Capture off (sampled out before the view): the app and the client see no difference and
    # nothing is recorded. The real policy turns capture off only for requests it drops.
    dropped = Client().post(
        "/echo", data=b'{"a": 1}', content_type="application/json", headers={"X-Sample": "none"}
    )
    assert dropped.content == b'{"a": 1}'
    assert dropped.headers["X-Quota-Remaining"] == "5"
    assert project.events() == [event]
    assert project.agent.stats()["sampled_out"] == 1


BODY_RULES = [
    {
        "_id": "body-rule",
        "type": "regex",
        "block": True,
        "regex_config": [
            {"conditions": [{"path": "request.body.operationName", "value": "^Drop"}]}
        ],
        "response": {"status": 403, "body": {"error": "not allowed"}},
    }
]


def _check_body_rule(project: Project, dropped: Any, kept: Any) -> None:
    assert dropped.status_code == 403 and dropped.json() == {"error": "not allowed"}
    assert kept.status_code == 201 and kept.json() == {"operationName": "Keep"}
    blocked, passed = project.events()
    assert blocked["blocked_by"] == "body-rule"
    assert passed["request"]["body"] == {"operationName": "Keep"}
    assert passed["response"]["body"] == {"operationName": "Keep"}


def test_rules_on_the_body_see_it_and_the_view_still_reads_it(project: Project) -> None:
    _serve_rules(project, {}, BODY_RULES)
    client = Client()
    dropped = client.post("/echo", {"operationName": "DropAll"}, "application/json")
    kept = client.post("/echo", {"operationName": "Keep"}, "application/json")
    _check_body_rule(project, dropped, kept)


@pytest.mark.anyio
async def test_rules_on_the_body_see_it_and_the_async_view_still_reads_it(
    project: Project,
) -> None:
    await _aserve_rules(project, {}, BODY_RULES)
    client = AsyncClient()
    dropped = await client.post("/async/echo", {"operationName": "DropAll"}, "application/json")
    kept = await client.post("/async/echo", {"operationName": "Keep"}, "application/json")
    _check_body_rule(project, dropped, kept)


def test_a_seekable_request_stream_reread_is_captured_once() -> None:
    body = Body(1000)
    tee = InputTee(io.BytesIO(b"0123456789"), body)
    assert tee.read(4) == b"0123"
    assert tee.seek(0, os.SEEK_END) == 10
    tee.seek(2)
    assert tee.readline() == b"23456789"
    tee.seek(0)
    assert b"".join(tee) == b"0123456789"
    assert tee.seekable() and body.value() == b"0123456789"


# Settings and the middleware protocol -----------------------------------------------------------


def test_reference_settings_with_uppercase_keys(project: Project) -> None:
    project.configure(legacy=True, log_body=False, api_version="v9")
    assert project.agent.options.log_body is False
    Client().post("/echo", data=b'{"a": 1}', content_type="application/json")
    event = project.event()
    assert event["request"]["api_version"] == "v9"
    assert "body" not in event["request"]


OFFLINE = {"APPLICATION_ID": "offline", "DRY_RUN": True}  # nothing is sent


def test_moesif_wins_over_the_reference_setting_key_by_key() -> None:
    legacy = {**OFFLINE, "LOG_BODY": False, "BASE_URI": "http://legacy.example"}
    with override_settings(
        MOESIF_MIDDLEWARE=legacy, MOESIF={"api_version": "v2", "LOG_BODY": True}
    ):
        options = MoesifMiddleware(_unused).agent.options
    assert (options.api_version, options.log_body, options.base_uri) == (
        "v2",
        True,
        "http://legacy.example",
    )


def test_bad_or_missing_settings_raise_at_startup() -> None:
    with override_settings(MOESIF=None, MOESIF_MIDDLEWARE=None):
        with pytest.raises(ImproperlyConfigured, match="application id"):
            MoesifMiddleware(_unused)
    with override_settings(MOESIF="app-id"):
        with pytest.raises(ImproperlyConfigured, match=r"settings\.MOESIF must be a dict"):
            MoesifMiddleware(_unused)
    with override_settings(MOESIF={"aplication_id": "x"}):
        with pytest.raises(ImproperlyConfigured, match="did you mean 'application_id'"):
            MoesifMiddleware(_unused)


def test_environment_variables_configure_a_project_without_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOESIF_APPLICATION_ID", "from-env")
    monkeypatch.setenv("MOESIF_DRY_RUN", "1")
    with override_settings(MOESIF=None, MOESIF_MIDDLEWARE=None):
        agent = MoesifMiddleware(_unused).agent
    assert agent.options.application_id == "from-env"


def test_sync_and_async_capable() -> None:
    assert MoesifMiddleware.sync_capable and MoesifMiddleware.async_capable

    async def get_response(request: Any) -> HttpResponse:
        return HttpResponse(b"ok")

    with override_settings(MOESIF=OFFLINE):
        assert not iscoroutinefunction(MoesifMiddleware(lambda request: HttpResponse(b"ok")))
        middleware = MoesifMiddleware(get_response)
    assert iscoroutinefunction(middleware)
    call = middleware(RequestFactory().get("/x"))
    assert asyncio.iscoroutine(call)
    assert asyncio.run(call).content == b"ok"


def test_a_disabled_agent_is_a_pass_through(project: Project) -> None:
    project.configure(enabled=False)
    response = Client().get("/items/1")
    assert response.status_code == 200
    assert "X-Moesif-Transaction-Id" not in response.headers
    assert project.events() == []


@pytest.mark.anyio
async def test_the_agent_fails_open(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("agent bug")

    monkeypatch.setattr(_guard, "reraise", False)  # production behaviour: log once, go on
    for step in ("_start", "_respond"):
        with monkeypatch.context() as patch:
            patch.setattr(MoesifMiddleware, step, broken)
            assert Client().get("/items/1").json() == {"id": 1, "name": "item 1"}
            response = await AsyncClient().get("/async/items/1")
            assert response.json() == {"id": 1, "name": "item 1"}
    assert STATE.calls == 4


class Boom(Exception):
    pass


def test_an_exception_out_of_get_response_propagates_unchanged(project: Project) -> None:
    def get_response(request: Any) -> HttpResponse:
        raise Boom("original")

    with pytest.raises(Boom, match="original"):
        MoesifMiddleware(get_response)(RequestFactory().get("/x"))
    event = project.event()
    assert event["response"]["status"] == 500
    assert event["metadata"]["_moesif"]["error"]["class"] == "Boom"


@pytest.mark.anyio
async def test_an_exception_out_of_async_get_response_propagates_unchanged(
    project: Project,
) -> None:
    async def get_response(request: Any) -> HttpResponse:
        raise Boom("original")

    with pytest.raises(Boom, match="original"):
        await MoesifMiddleware(get_response)(RequestFactory().get("/x"))
    event = project.event()
    assert event["response"]["status"] == 500
    assert event["metadata"]["_moesif"]["error"]["class"] == "Boom"


# Django's real ASGI handler ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_under_django_asgi_handler(project: Project) -> None:
    project.configure(max_body_size=5000)
    STATE.gate = asyncio.Event()
    STATE.gate.set()
    transport = httpx.ASGITransport(app=ASGIHandler())
    upload = ("big.bin", b"u" * 50_000, "application/octet-stream")
    async with httpx.AsyncClient(transport=transport, base_url="http://api.example") as client:
        created = await client.post("/async/echo", json={"name": "w"})
        assert created.status_code == 201 and created.json() == {"name": "w"}
        streamed = await client.get("/async/stream")
        assert streamed.text == "data: 1\n\ndata: 2\n\n"
        uploaded = await client.post("/upload", files={"file": upload}, data={"t": "x"})
        assert uploaded.json() == {"files": {"file": 50_000}, "fields": {"t": "x"}}
    events = {event["request"]["uri"]: event for event in project.events()}
    echo = events["http://api.example/async/echo"]
    assert echo["request"]["body"] == {"name": "w"} and echo["response"]["body"] == {"name": "w"}
    assert echo["request"]["headers"]["Host"] == "api.example"
    stream = events["http://api.example/async/stream"]
    assert b64(stream["response"]["body"]) == b"data: 1\n\ndata: 2\n\n"
    upload_event = events["http://api.example/upload"]
    assert len(b64(upload_event["request"]["body"])) == 5000
    assert upload_event["metadata"]["_moesif"]["request_body"]["size"] > 50_000


# The example project ---------------------------------------------------------------------------


def test_example_project_serves_the_contract_routes(project: Project) -> None:
    script = """
import json
from django.test import Client
client = Client(raise_request_exception=False)
results = [
    client.get("/items/5").json(),
    client.post("/items", data={"a": 1}, content_type="application/json").json(),
    b"".join(client.get("/stream?delay=0").streaming_content).decode().count("data:"),
    client.get("/health").status_code,
    client.get("/error").status_code,
]
from moesif_agent.integrations.django import MoesifMiddleware
assert MoesifMiddleware(lambda request: None).agent.flush(timeout=10)
print(json.dumps(results))
"""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "examples.django_project.settings",
        "MOESIF_APPLICATION_ID": "example-app",
        "MOESIF_BASE_URI": project.settings["base_uri"],
        "MOESIF_BATCH_MAX_TIME": "0.05",
    }
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"id": "5", "name": "item 5"}, {"a": 1}, 5, 200, 500]
    routes = sorted(event["metadata"]["route"] for event in project.recorder.events())
    assert routes == ["/error", "/health", "/items", "/items/<item_id>", "/stream"]
