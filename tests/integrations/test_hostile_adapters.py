"""Never break the app, whatever it does: ASGI lifespan exactly as without the agent, no extra
Django queries, the app's failures recorded as what the client got, sampling on bodies,
non-ASCII paths. Case numbers refer to the hostile-input issue.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx")

from tests.hostile import (
    Wrapped,
    _module_recorder,  # noqa: F401  (a fixture)
    call_wsgi,
    recorder_fixture,  # noqa: F401  (the fixture "recorder": one server per module)
)
from tests.integrations.stacks import (
    APP,
    LOOPBACK,
    Stack,
    http_scope,
    stack_fixture,  # noqa: F401  (the fixture "stack")
)
from tests.recorder import Recorder

ROOT = Path(__file__).resolve().parents[2]
ERROR = {"class": "HandlerFailed", "message": "the handler failed on purpose"}


def only(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(events) == 1, events
    return events[0]


def moesif_notes(event: dict[str, Any]) -> dict[str, Any]:
    notes: dict[str, Any] = event.get("metadata", {}).get("_moesif", {})
    return notes


# 11. ASGI lifespan, exactly as without the agent -------------------------------------------------

Message = dict[str, Any]
LifespanApp = Callable[[Any, Any, Any], Awaitable[None]]


class LifespanRefused(RuntimeError):
    pass


async def completes(scope: Any, receive: Any, send: Any) -> None:
    assert (await receive())["type"] == "lifespan.startup"
    await send({"type": "lifespan.startup.complete"})
    assert (await receive())["type"] == "lifespan.shutdown"
    await send({"type": "lifespan.shutdown.complete"})


async def raises_at_once(scope: Any, receive: Any, send: Any) -> None:
    raise LifespanRefused("no lifespan here")


async def raises_after_startup(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    raise LifespanRefused("startup went wrong")


async def startup_fails(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})


async def returns_at_once(scope: Any, receive: Any, send: Any) -> None:
    return None


async def returns_after_startup(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "lifespan.startup.complete"})


async def returns_on_shutdown(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()


async def raises_on_shutdown(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    raise LifespanRefused("shutdown went wrong")


async def shutdown_fails(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    await send({"type": "lifespan.shutdown.failed", "message": "could not close"})


BEHAVIOURS: dict[str, LifespanApp] = {
    "completes": completes,
    "raises-at-once": raises_at_once,
    "raises-after-startup": raises_after_startup,
    "startup-fails": startup_fails,
    "returns-at-once": returns_at_once,
    "returns-after-startup": returns_after_startup,
    "returns-on-shutdown": returns_on_shutdown,
    "raises-on-shutdown": raises_on_shutdown,
    "shutdown-fails": shutdown_fails,
}
TAKES_PART_IN_SHUTDOWN = (
    "completes",
    "returns-on-shutdown",
    "raises-on-shutdown",
    "shutdown-fails",
)


async def run_lifespan(
    app: Any,
    between: Callable[[], Awaitable[None]] | None = None,
    on_message: Callable[[Message], None] | None = None,
) -> tuple[list[Message], str]:
    """Drive ``app`` as a server drives lifespan: startup; once startup is complete,
    ``between`` (the app serving), then shutdown. Returns what the server was told and how
    the call ended ("returned", "hung", or the exception)."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    inbox.put_nowait({"type": "lifespan.startup"})
    told: list[Message] = []

    async def receive() -> Message:
        return await inbox.get()

    async def send(message: Message) -> None:
        told.append(dict(message))
        if on_message is not None:
            on_message(message)
        if message["type"] == "lifespan.startup.complete":
            if between is not None:
                await between()
            inbox.put_nowait({"type": "lifespan.shutdown"})

    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    try:
        await asyncio.wait_for(app(scope, receive, send), 1.0)
    except asyncio.TimeoutError:
        return told, "hung"
    except Exception as exc:
        return told, f"raised {type(exc).__name__}: {exc}"
    return told, "returned"


def _wrappers(settings: dict[str, Any]) -> dict[str, Callable[[LifespanApp], Any]]:
    from moesif_agent.integrations.asgi import FlushOnShutdown, MoesifASGIMiddleware

    return {
        "middleware": lambda app: MoesifASGIMiddleware(app, settings),
        "flush-on-shutdown": FlushOnShutdown,
    }


@pytest.mark.parametrize("wrapper", ["middleware", "flush-on-shutdown"])
@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
def test_11_the_server_sees_the_apps_lifespan_exactly(
    settings: dict[str, Any], wrapper: str, behaviour: str
) -> None:
    if wrapper == "flush-on-shutdown" and behaviour == "raises-at-once":
        pytest.skip("FlushOnShutdown answers for an app that refuses lifespan: its purpose")
    app = BEHAVIOURS[behaviour]
    expected = asyncio.run(run_lifespan(app))
    assert expected[1] != "hung"
    got = asyncio.run(run_lifespan(_wrappers(settings)[wrapper](app)))
    assert got == expected


async def _http_app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _serving_app(behaviour: LifespanApp) -> LifespanApp:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await behaviour(scope, receive, send)
        else:
            await _http_app(scope, receive, send)

    return app


async def _three_requests(app: Any) -> None:
    for n in range(3):
        scope = http_scope(f"/served/{n}", client=(LOOPBACK, 50000))
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message, sent: list[Message] = sent) -> None:
            sent.append(message)

        await app(scope, receive, send)
        assert sent[0]["status"] == 200


@pytest.mark.parametrize("wrapper", ["middleware", "flush-on-shutdown"])
@pytest.mark.parametrize("behaviour", TAKES_PART_IN_SHUTDOWN)
def test_11_events_are_delivered_before_the_server_hears_shutdown_end(
    settings: dict[str, Any], recorder: Recorder, wrapper: str, behaviour: str
) -> None:
    from moesif_agent.integrations.asgi import FlushOnShutdown, MoesifASGIMiddleware

    recording = MoesifASGIMiddleware(
        _serving_app(BEHAVIOURS[behaviour]), {**settings, "batch_max_time": 30}
    )
    app = recording if wrapper == "middleware" else FlushOnShutdown(recording.app)
    delivered: dict[str, int] = {}

    def on_message(message: Message) -> None:
        if message["type"].startswith("lifespan.shutdown"):
            delivered["told"] = len(recorder.events())

    told, ended = asyncio.run(
        run_lifespan(app, between=lambda: _three_requests(recording), on_message=on_message)
    )
    delivered.setdefault("told", len(recorder.events()))  # the app never told: at its end
    assert ended != "hung", told
    assert delivered["told"] == 3, (told, ended)


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
@pytest.mark.parametrize("how", ["asgi-middleware", "starlette-middleware"])
def test_11_starlettes_exception_in_middleware_still_raises_when_wrapped(
    settings: dict[str, Any], how: str
) -> None:
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.testclient import TestClient

    from moesif_agent.integrations.asgi import MoesifASGIMiddleware
    from moesif_agent.integrations.starlette import MoesifMiddleware

    class MiddlewareException(Exception):
        pass

    class BrokenMiddleware:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            raise MiddlewareException()

    app: Any = Starlette(middleware=[Middleware(BrokenMiddleware)])
    if how == "asgi-middleware":
        app = MoesifASGIMiddleware(app, settings)
    else:
        app.add_middleware(MoesifMiddleware, settings=settings)
    with pytest.raises(MiddlewareException), TestClient(app):
        pass


# 12. Django: the agent runs no query the app did not ---------------------------------------------

DJANGO_PROJECT = textwrap.dedent(
    """
    import json
    import re
    import sys

    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="moesif-agent-tests",
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        MOESIF={"application_id": "test-app", "dry_run": True, "batch_max_time": 0.05},
    )
    django.setup()

    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.http import JsonResponse
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext
    from django.urls import path

    from moesif_agent.integrations.django import MoesifMiddleware


    def plain(request):
        return JsonResponse({"ok": True})


    def whoami(request):
        return JsonResponse({"user": request.user.get_username()})


    urlpatterns = [path("plain", plain), path("whoami", whoami)]

    STACK = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    MOESIF = "moesif_agent.integrations.django.MoesifMiddleware"

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("alice", password="pw")


    def queries(middleware, route):
        with override_settings(MIDDLEWARE=middleware):
            client = Client()
            client.force_login(user)
            with CaptureQueriesContext(connection) as captured:
                response = client.get(route, HTTP_AUTHORIZATION="Bearer not-a-jwt")
            assert response.status_code == 200, response.status_code
            # Literals (the session key, the time now) differ from run to run.
            return [re.sub(r"'[^']*'", "?", query["sql"]) for query in captured.captured_queries]


    result = {}
    for route in ("/plain", "/whoami"):
        result[route] = {
            "bare": queries(STACK, route),
            "wrapped": queries([MOESIF, *STACK], route),
        }
    with override_settings(MIDDLEWARE=[MOESIF, *STACK]):
        agent = MoesifMiddleware(lambda request: None).agent
        assert agent.flush(timeout=10)
        result["users"] = {
            event["request"]["uri"].rsplit("/", 1)[-1]: event.get("user_id")
            for event in agent.dry_run_events
        }
    json.dump(result, sys.stdout)
    """
)


def test_12_django_with_auth_and_sessions_runs_exactly_the_apps_queries(
    tmp_path: Path,
) -> None:
    pytest.importorskip("django")
    script = tmp_path / "project.py"
    script.write_text(DJANGO_PROJECT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOESIF_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    for route in ("/plain", "/whoami"):
        bare, wrapped = result[route]["bare"], result[route]["wrapped"]
        assert len(wrapped) == len(bare), (route, bare, wrapped)
        assert wrapped == bare, route
    assert result["users"] == {"plain": None, "whoami": "alice"}


# 15. Sampling on request.body.<key> --------------------------------------------------------------


def test_15_a_sampling_condition_on_a_body_key_matches(stack: Stack, recorder: Recorder) -> None:
    config = {
        "regex_config": [
            {"conditions": [{"path": "request.body.kind", "value": "^noise$"}], "sample_rate": 0}
        ]
    }
    recorder.serve_config(config, [])
    served = stack.serve()
    served.get("/health", client=LOOPBACK)
    assert served.agent.flush(timeout=10)  # the worker fetches the config first
    noise = served.post_json("/items", b'{"kind": "noise", "n": 1}')
    signal = served.post_json("/items", b'{"kind": "signal", "n": 2}')
    assert (noise.status, signal.status) == (201, 201)
    assert [seen.body for seen in APP.calls("/items")] == [
        b'{"kind": "noise", "n": 1}',
        b'{"kind": "signal", "n": 2}',
    ]
    recorded = [event["request"].get("body") for event in served.events("/items")]
    assert recorded == [{"kind": "signal", "n": 2}]


@pytest.mark.parametrize("content_type", ["APPLICATION/JSON", "Application/Json; charset=UTF-8"])
def test_15_a_body_rule_is_not_dodged_by_the_content_types_letter_case(
    stack: Stack, recorder: Recorder, content_type: str
) -> None:
    """Media types are case-insensitive: the framework reads this body as JSON, and so must
    the rule that blocks on it."""
    rule = {
        "_id": "body-rule",
        "type": "regex",
        "block": True,
        "regex_config": [{"conditions": [{"path": "request.body.kind", "value": "^drop$"}]}],
        "response": {"status": 403, "body": {"error": "not allowed"}},
    }
    recorder.serve_config({}, [rule])
    served = stack.serve()
    served.get("/health", client=LOOPBACK)
    assert served.agent.flush(timeout=10)  # the worker fetches the rules first
    got = served.post_json("/items", b'{"kind": "drop"}', headers={"Content-Type": content_type})
    assert got.status == 403
    assert APP.calls("/items") == []


# 16. Failures after the response started; non-ASCII paths ----------------------------------------


class StreamBroke(RuntimeError):
    pass


def broken_stream(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first chunk\n"
    raise StreamBroke("the database went away")


def test_16_a_wsgi_stream_failing_after_its_first_chunk_is_a_200_with_the_error(
    recorder: Recorder,
) -> None:
    app = Wrapped(recorder, app=broken_stream)
    with pytest.raises(StreamBroke):
        app.call("GET", "/export")
    event = app.event()
    assert event["response"]["status"] == 200
    assert moesif_notes(event).get("error") == {
        "class": "StreamBroke",
        "message": "the database went away",
    }


def test_16_an_asgi_stream_failing_after_its_first_chunk_is_a_200_with_the_error(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    from moesif_agent.integrations.asgi import MoesifASGIMiddleware

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first chunk\n", "more_body": True})
        raise StreamBroke("the database went away")

    middleware = MoesifASGIMiddleware(app, settings)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": "/export",
        "query_string": b"",
        "headers": [(b"host", b"api.example")],
        "client": ("203.0.113.9", 50000),
    }
    with pytest.raises(StreamBroke):
        asyncio.run(middleware(scope, receive, send))
    assert middleware.agent.flush(timeout=10)
    (event,) = recorder.events()
    assert event["response"]["status"] == 200
    assert moesif_notes(event).get("error") == {
        "class": "StreamBroke",
        "message": "the database went away",
    }


BRICK = "/кирпич"
ENCODED = "%D0%BA%D0%B8%D1%80%D0%BF%D0%B8%D1%87"
BRICK_URI = f"http://api.example/{ENCODED}?q={ENCODED}"


def test_16_a_non_ascii_path_and_query_are_percent_encoded_once(stack: Stack) -> None:
    served = stack.serve()
    if stack.kind == "wsgi":  # PEP 3333: the path's UTF-8 bytes as latin-1 characters
        call_wsgi(served.app, "GET", BRICK, query="q=кирпич")  # type: ignore[attr-defined]
    else:
        served.get(f"{BRICK}?q=кирпич")
    served.agent.flush(timeout=10)
    (event,) = served.recorder.events()
    assert event["request"]["uri"] == BRICK_URI


# 17. The exception in the event ------------------------------------------------------------------


def test_17_a_raising_view_records_its_exception_class_and_message(stack: Stack) -> None:
    served = stack.serve()
    got = served.get("/error")
    assert got.status == 500 or got.error
    event = only(served.events("/error"))
    assert event["response"]["status"] == 500
    assert moesif_notes(event).get("error") == ERROR


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception raises")


def test_17_an_exception_whose_str_raises_still_propagates_unchanged(recorder: Recorder) -> None:
    raised = UnprintableError()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        raise raised

    wrapped = Wrapped(recorder, app=app)
    with pytest.raises(UnprintableError) as caught:
        wrapped.call("GET", "/boom")
    assert caught.value is raised
    event = wrapped.event()
    assert event["response"]["status"] == 500
    assert moesif_notes(event)["error"]["class"] == "UnprintableError"
