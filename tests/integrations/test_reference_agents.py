"""Code written for Moesif's reference agents runs with only the import changed.

Each test restates one usage the moesifwsgi, moesifasgi or moesifdjango README documents: its
settings dict (the UPPERCASE keys), its callbacks with their signatures, its mask function
(``eventmodel.response.body[...]``) and its ``middleware.update_*`` calls with their payload
shapes, and the one line that differs is the import (the README's own is in the comment
beside it). Where a README example cannot run as printed, the test says why. Everything goes
to the test's recording collector (MOESIF_BASE_URI, since the README settings have no
BASE_URI: they mean production).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from moesif_agent import Options
from moesif_agent._agent import all_agents
from tests.recorder import Recorder


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def collector(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    monkeypatch.setenv("MOESIF_BASE_URI", recorder.url)
    monkeypatch.setenv("MOESIF_BATCH_MAX_TIME", "0.05")
    yield recorder


def flush() -> None:
    # add_middleware builds the middleware out of reach: flush every agent of the process.
    for agent in all_agents():
        assert agent.flush(timeout=10)


def the_event(recorder: Recorder, path: str) -> dict[str, Any]:
    (event,) = [e for e in recorder.events() if e["request"]["uri"].endswith(path)]
    return event


def mask_event(eventmodel: Any) -> Any:
    """The mask function all three READMEs show: attribute access on the event model."""
    if "password" in eventmodel.response.body:
        eventmodel.response.body["password"] = None
    return eventmodel


METADATA = {"datacenter": "westus", "deployment_version": "v1.2.3"}


def assert_callbacks_applied(event: dict[str, Any], user: str, body: Any) -> None:
    assert (event["user_id"], event["company_id"]) == (user, "67890")
    assert event["metadata"].items() >= METADATA.items()  # with the route
    assert event["response"]["body"] == body


# The READMEs' profile payloads (user, company, subscription), shaped as they print them.
USER = {
    "user_id": "12345",
    "company_id": "67890",
    "campaign": {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring"},
    "metadata": {
        "email": "ada@example.com",
        "first_name": "Ada",
        "sales_info": {"stage": "Customer", "lifetime_value": 24000},
    },
}
OTHER_USER = {"user_id": "54321", "company_id": "67890", "metadata": {"first_name": "Grace"}}
COMPANY = {
    "company_id": "67890",
    "company_domain": "example.com",
    "campaign": {"utm_source": "search"},
    "metadata": {"org_name": "Example, Inc", "plan_name": "Free", "mrr": 24000},
}
OTHER_COMPANY = {"company_id": "09876", "company_domain": "example.org", "metadata": {}}
SUBSCRIPTION = {
    "subscription_id": "sub_67890",
    "company_id": "3456",
    "status": "active",
    "metadata": {"plan_name": "Pro", "mrr": 12000, "currency": "USD"},
}
OTHER_SUBSCRIPTION = {**SUBSCRIPTION, "subscription_id": "sub_54321", "company_id": "6789"}


def call_every_update_method(middleware: Any) -> None:
    """The README's update_* calls, each with the payload it shows."""
    assert middleware.update_user(USER) is None  # queued, as the reference agents return
    middleware.update_users_batch([USER, OTHER_USER])
    middleware.update_company(COMPANY)
    # moesifdjango's README passes [userA, userB] here, a copy-paste slip the reference agent
    # would send on; we ask for a company_id at the call, so the test passes companies.
    middleware.update_companies_batch([COMPANY, OTHER_COMPANY])
    # The README's subscription dicts miss a comma after 'status' (a SyntaxError as printed).
    middleware.update_subscription(SUBSCRIPTION)
    middleware.update_subscriptions_batch([SUBSCRIPTION, OTHER_SUBSCRIPTION])


def assert_every_update_arrived(recorder: Recorder) -> None:
    flush()
    users = recorder.events("/v1/users/batch")
    assert [u["user_id"] for u in users] == ["12345", "12345", "54321"]
    assert users[0]["campaign"]["utm_source"] == "newsletter"
    assert users[0]["metadata"]["sales_info"]["lifetime_value"] == 24000
    companies = recorder.events("/v1/companies/batch")
    assert [c["company_id"] for c in companies] == ["67890", "67890", "09876"]
    assert companies[0]["company_domain"] == "example.com"
    subscriptions = recorder.events("/v1/subscriptions/batch")
    assert [s["subscription_id"] for s in subscriptions] == ["sub_67890", "sub_67890", "sub_54321"]
    assert subscriptions[0]["status"] == "active"


# moesifwsgi: Flask --------------------------------------------------------------------------


def test_moesifwsgi_flask_example(collector: Recorder) -> None:
    flask = pytest.importorskip("flask")
    from moesif_agent.integrations.wsgi import MoesifMiddleware  # from moesifwsgi import ...

    def identify_user(app: Any, environ: Any, response_headers: Any = dict()) -> str:  # noqa: B006
        return "12345"

    def identify_company(app: Any, environ: Any, response_headers: Any = dict()) -> str:  # noqa: B006
        return "67890"

    def should_skip(app: Any, environ: Any) -> bool:
        return "health/probe" in environ.get("PATH_INFO", "")

    def get_token(app: Any, environ: Any) -> str:
        return "XXXXXXXXXXXXXX"

    def get_metadata(app: Any, environ: Any) -> dict[str, str]:
        return METADATA

    moesif_settings = {
        "APPLICATION_ID": "YOUR_MOESIF_APPLICATION_ID",
        "DEBUG": False,
        "LOG_BODY": True,
        "IDENTIFY_USER": identify_user,
        "IDENTIFY_COMPANY": identify_company,
        "GET_SESSION_TOKEN": get_token,
        "SKIP": should_skip,
        "MASK_EVENT_MODEL": mask_event,
        "GET_METADATA": get_metadata,
        "CAPTURE_OUTGOING_REQUESTS": False,
    }

    app = flask.Flask(__name__)
    app.add_url_rule("/login", "login", lambda: {"user": "ada", "password": "s3cret"})
    app.add_url_rule("/health/probe", "probe", lambda: "ok")
    app.wsgi_app = MoesifMiddleware(app.wsgi_app, moesif_settings)  # type: ignore[method-assign]

    client = app.test_client()
    assert client.get("/login").get_json()["user"] == "ada"
    assert client.get("/health/probe").data == b"ok"
    flush()
    (event,) = collector.events()  # the probe was skipped
    assert event["request"]["uri"].endswith("/login")
    assert_callbacks_applied(event, "12345", {"user": "ada", "password": None})
    assert event["session_token"] == "XXXXXXXXXXXXXX"

    call_every_update_method(app.wsgi_app)
    assert_every_update_arrived(collector)


def test_moesifwsgi_bottle_example(collector: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    bottle = pytest.importorskip("bottle")
    from moesif_agent.integrations.wsgi import MoesifMiddleware  # from moesifwsgi import ...

    served: list[Any] = []
    monkeypatch.setattr(bottle, "run", lambda app, **kwargs: served.append(app))

    app = bottle.Bottle()
    app.route("/hello", callback=lambda: {"hello": "world"})
    moesif_settings = {"APPLICATION_ID": "YOUR_MOESIF_APPLICATION_ID", "LOG_BODY": True}
    bottle.run(app=MoesifMiddleware(app, moesif_settings))

    from werkzeug.test import Client

    response = Client(served[0]).get("/hello")
    assert response.get_json() == {"hello": "world"}
    flush()
    assert the_event(collector, "/hello")["response"]["body"] == {"hello": "world"}


# moesifasgi: FastAPI ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_moesifasgi_fastapi_example(collector: Recorder) -> None:
    fastapi = pytest.importorskip("fastapi")
    import httpx

    from moesif_agent.integrations.starlette import MoesifMiddleware  # from moesifasgi import ...

    def identify_user(request: Any, response: Any) -> str:
        return "12345"

    async def identify_company(request: Any, response: Any) -> str:  # the async mode
        return "67890"

    def get_metadata(request: Any, response: Any) -> dict[str, str]:
        return METADATA

    def should_skip(request: Any, response: Any) -> bool:
        return "health/probe" in request.url._url

    moesif_settings = {
        "APPLICATION_ID": "YOUR_MOESIF_APPLICATION_ID",
        "LOG_BODY": True,
        "DEBUG": False,
        "IDENTIFY_USER": identify_user,
        "IDENTIFY_COMPANY": identify_company,
        "GET_METADATA": get_metadata,
        "SKIP": should_skip,
        "MASK_EVENT_MODEL": mask_event,
        "CAPTURE_OUTGOING_REQUESTS": False,
    }

    app = fastapi.FastAPI()
    app.add_middleware(MoesifMiddleware, settings=moesif_settings)

    @app.get("/login")
    async def login() -> dict[str, str]:
        return {"user": "ada", "password": "s3cret"}

    @app.get("/health/probe")
    async def probe() -> str:
        return "ok"

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.example") as client:
        assert (await client.get("/login")).json()["user"] == "ada"
        assert (await client.get("/health/probe")).status_code == 200
    flush()
    (event,) = collector.events()
    assert event["request"]["uri"] == "http://api.example/login"
    assert_callbacks_applied(event, "12345", {"user": "ada", "password": None})


def test_moesifasgi_middleware_has_the_update_methods(collector: Recorder) -> None:
    pytest.importorskip("starlette")
    from moesif_agent.integrations.starlette import MoesifMiddleware  # from moesifasgi import ...

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not called")

    middleware = MoesifMiddleware(app, settings={"APPLICATION_ID": "YOUR_MOESIF_APPLICATION_ID"})
    call_every_update_method(middleware)
    assert_every_update_arrived(collector)


# moesifdjango ---------------------------------------------------------------------------------


@pytest.fixture
def django_project(collector: Recorder) -> Iterator[Any]:
    django = pytest.importorskip("django")
    from django.conf import settings as django_settings

    if not django_settings.configured:
        django_settings.configure(
            SECRET_KEY="moesif-agent-tests", USE_TZ=True, DATABASES={}, INSTALLED_APPS=[]
        )
    django.setup()
    from django.test import override_settings

    def with_settings(moesif_middleware: dict[str, Any]) -> Any:
        return override_settings(
            ROOT_URLCONF="tests.integrations.django_test_project.urls",
            ALLOWED_HOSTS=["*"],
            DEBUG=False,
            MIDDLEWARE=[
                "moesif_agent.integrations.django.MoesifMiddleware",
                "tests.integrations.django_test_project.middleware.FakeAuthMiddleware",
            ],
            MOESIF=None,
            MOESIF_MIDDLEWARE=moesif_middleware,
        )

    yield with_settings


def test_moesifdjango_settings_example_and_update_methods(
    django_project: Any, collector: Recorder
) -> None:
    from django.test import Client

    from moesif_agent.integrations.django import (  # from moesifdjango.middleware import ...
        MoesifMiddleware,
    )

    def identify_user(req: Any, res: Any) -> str | None:
        if req.user and req.user.is_authenticated:
            return str(req.user.username)
        return None

    def identify_company(req: Any, res: Any) -> str:
        return "67890"

    def should_skip(req: Any, res: Any) -> bool:
        return "health/probe" in req.path

    def get_token(req: Any, res: Any) -> str:
        return "XXXXXXXXXXXXXX"

    def get_metadata(req: Any, res: Any) -> dict[str, str]:
        return METADATA

    MOESIF_MIDDLEWARE = {
        "APPLICATION_ID": "Your application id",
        "LOCAL_DEBUG": False,
        "LOG_BODY": True,
        "IDENTIFY_USER": identify_user,
        "IDENTIFY_COMPANY": identify_company,
        "GET_SESSION_TOKEN": get_token,
        "SKIP": should_skip,
        "MASK_EVENT_MODEL": mask_event,
        "GET_METADATA": get_metadata,
        "USE_CELERY": False,  # the older README's example: accepted, ignored with a warning
    }
    with django_project(MOESIF_MIDDLEWARE):
        response = Client().get("/items/7", headers={"X-Test-User": "alice"})
        assert response.json() == {"id": 7, "name": "item 7"}

        middleware = MoesifMiddleware(None)  # the README's way to reach update_user()
        flush()
        event = the_event(collector, "/items/7")
        assert_callbacks_applied(event, "alice", {"id": 7, "name": "item 7"})
        assert event["session_token"] == "XXXXXXXXXXXXXX"

        call_every_update_method(middleware)
        assert_every_update_arrived(collector)


def test_moesifdjango_middleware_none_builds_from_settings_alone(
    django_project: Any, collector: Recorder
) -> None:
    from moesif_agent.integrations.django import MoesifMiddleware

    with django_project({"APPLICATION_ID": "Your application id"}):
        middleware = MoesifMiddleware(None)
        middleware.update_user({"user_id": "testpythonapiuser", "metadata": {"name": "abcde"}})
        outcome = middleware.update_company({"company_id": "1"}, sync=True)
        assert outcome is not None and outcome.ok
    flush()
    assert collector.events("/v1/users/batch")[0]["user_id"] == "testpythonapiuser"
    assert collector.events("/v1/companies/batch") == [{"company_id": "1"}]


def test_a_payload_without_its_id_fails_at_the_call(collector: Recorder) -> None:
    from moesif_agent.integrations.wsgi import MoesifMiddleware

    middleware = MoesifMiddleware(lambda environ, start: [], {"APPLICATION_ID": "app"})
    with pytest.raises(ValueError, match="update_user: user_id is required"):
        middleware.update_user({"metadata": {"email": "ada@example.com"}})


# Every reference setting --------------------------------------------------------------------

# The settings the three reference agents read (their READMEs and their code), with a value and
# the Options field it becomes; None: accepted and ignored with a warning.
REFERENCE_SETTINGS: dict[str, tuple[Any, str | None]] = {
    "APPLICATION_ID": ("another-app", "application_id"),
    "BASE_URI": ("http://127.0.0.1:9", "base_uri"),
    "LOCAL_MOESIF_BASEURL": ("http://127.0.0.1:9", "base_uri"),
    "DEBUG": (True, "debug"),
    "LOCAL_DEBUG": (True, "debug"),
    "LOG_BODY": (False, "log_body"),
    "API_VERSION": ("1.2", "api_version"),
    "SKIP": (lambda *a: False, "skip"),
    "IDENTIFY_USER": (lambda *a: "u", "identify_user"),
    "IDENTIFY_COMPANY": (lambda *a: "c", "identify_company"),
    "GET_SESSION_TOKEN": (lambda *a: "t", "get_session_token"),
    "GET_METADATA": (lambda *a: {}, "get_metadata"),
    "MASK_EVENT_MODEL": (lambda e: e, "mask_event_model"),
    "REQUEST_HEADER_MASKS": (["x-a"], "request_header_masks"),
    "REQUEST_BODY_MASKS": (["a"], "request_body_masks"),
    "RESPONSE_HEADER_MASKS": (["x-b"], "response_header_masks"),
    "RESPONSE_BODY_MASKS": (["b"], "response_body_masks"),
    "BATCH_SIZE": (25, "batch_size"),
    "EVENT_QUEUE_SIZE": (1000, "event_queue_size"),
    "EVENT_BATCH_TIMEOUT": (2, "batch_max_time"),
    "AUTHORIZATION_HEADER_NAME": ("X-Api-Key,Authorization", "authorization_header_name"),
    "AUTHORIZATION_USER_ID_FIELD": ("uid", "authorization_user_id_field"),
    "DISABLED_TRANSACTION_ID": (True, "disable_transaction_id"),
    "DISABLE_TRANSACTION_ID": (True, "disable_transaction_id"),
    "CAPTURE_OUTGOING_REQUESTS": (True, "capture_outgoing"),
    "SKIP_OUTGOING": (lambda *a: False, "skip_outgoing"),
    "IDENTIFY_USER_OUTGOING": (lambda *a: "u", "identify_user_outgoing"),
    "IDENTIFY_COMPANY_OUTGOING": (lambda *a: "c", "identify_company_outgoing"),
    "GET_SESSION_TOKEN_OUTGOING": (lambda *a: "t", "get_session_token_outgoing"),
    "GET_METADATA_OUTGOING": (lambda *a: {}, "get_metadata_outgoing"),
    "LOG_BODY_OUTGOING": (False, "log_body_outgoing"),
    "EVENT_WORKER_COUNT": (4, None),
    "USE_CELERY": (True, None),
    "CELERY_BROKER_URL": ("redis://localhost:6379/0", None),
    "ENABLE_BATCH_COMPRESSION": (True, None),
    "AUTHORIZATION_HEADER_NAME_SEPARATOR": (",", None),
}


@pytest.mark.parametrize("key", list(REFERENCE_SETTINGS))
def test_every_reference_setting_is_mapped_or_ignored_with_advice(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    value, field = REFERENCE_SETTINGS[key]
    base = {"APPLICATION_ID": "app"}
    with caplog.at_level(logging.WARNING, logger="moesif_agent"):
        options = Options.from_mapping({**base, key: value})
    if field is None:
        (record,) = caplog.records
        message = record.getMessage()
        assert key in message and ("remove it" in message or "instead" in message)
        assert options == Options.from_mapping(base)
    else:
        assert not caplog.records
        assert getattr(options, field) != getattr(Options.from_mapping(base), field)


def test_base_uri_wins_over_the_older_local_moesif_baseurl() -> None:
    for settings in (
        {"LOCAL_MOESIF_BASEURL": "http://127.0.0.1:1", "BASE_URI": "http://127.0.0.1:2"},
        {"BASE_URI": "http://127.0.0.1:2", "LOCAL_MOESIF_BASEURL": "http://127.0.0.1:1"},
    ):
        assert Options.from_mapping({"APPLICATION_ID": "a", **settings}).base_uri.endswith(":2")
