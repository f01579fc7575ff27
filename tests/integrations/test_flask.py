from __future__ import annotations

from typing import Any

import pytest

flask = pytest.importorskip("flask")

from moesif_agent.integrations.flask import Moesif, MoesifWSGIMiddleware
from tests.recorder import Recorder


def make_app() -> Any:
    app = flask.Flask(__name__)

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return {"id": item_id}

    @app.post("/items")
    def create() -> Any:
        return flask.jsonify(flask.request.get_json()), 201

    return app


def test_extension_records_events_with_the_route_template(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    app = make_app()
    moesif = Moesif(app, settings)
    client = app.test_client()
    assert client.get("/items/7").json == {"id": 7}
    # A server always iterates (and closes) the response; so does reading .data here.
    created = client.post("/items", json={"name": "w"})
    assert (created.status_code, created.json) == (201, {"name": "w"})
    missing = client.get("/missing")
    assert (missing.status_code, b"Not Found" in missing.data) == (404, True)
    assert moesif.agent.flush(timeout=10)
    events = recorder.events()
    by_uri = {e["request"]["uri"]: e for e in events}
    assert by_uri["http://localhost/items/7"]["metadata"]["route"] == "/items/<int:item_id>"
    assert by_uri["http://localhost/items"]["request"]["body"] == {"name": "w"}
    assert by_uri["http://localhost/items"]["response"]["status"] == 201
    assert "metadata" not in by_uri["http://localhost/missing"]
    assert app.extensions["moesif"] is moesif.middleware


def test_init_app_factory_pattern(settings: dict[str, Any], recorder: Recorder) -> None:
    moesif = Moesif(options=settings)
    with pytest.raises(RuntimeError, match="init_app"):
        moesif.agent  # noqa: B018
    app = make_app()
    moesif.init_app(app)
    assert app.test_client().get("/items/1").json == {"id": 1}
    assert moesif.agent.flush(timeout=10)
    assert len(recorder.events()) == 1


def test_wrapping_wsgi_app_directly_works(settings: dict[str, Any], recorder: Recorder) -> None:
    app = make_app()
    app.wsgi_app = MoesifWSGIMiddleware(app.wsgi_app, settings)  # type: ignore[method-assign]
    response = app.test_client().get("/items/3")
    assert response.json == {"id": 3}
    assert app.wsgi_app.agent.flush(timeout=10)
    (event,) = recorder.events()
    assert event["transaction_id"] == response.headers["X-Moesif-Transaction-Id"]
    assert event["response"]["body"] == {"id": 3}


def test_flask_errors_are_recorded_as_500(settings: dict[str, Any], recorder: Recorder) -> None:
    app = make_app()

    @app.get("/error")
    def error() -> Any:
        raise RuntimeError("boom")

    moesif = Moesif(app, settings)
    failed = app.test_client().get("/error")
    assert (failed.status_code, b"Internal Server Error" in failed.data) == (500, True)
    assert moesif.agent.flush(timeout=10)
    (event,) = recorder.events()
    assert event["response"]["status"] == 500


def test_example_app_serves_the_contract_routes(
    settings: dict[str, Any], recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOESIF_APPLICATION_ID", settings["application_id"])
    monkeypatch.setenv("MOESIF_BASE_URI", settings["base_uri"])
    monkeypatch.setenv("MOESIF_BATCH_MAX_TIME", "0.05")
    from examples.flask_app import create_app

    app = create_app()
    client = app.test_client()
    assert client.get("/items/5").json == {"id": "5", "name": "item 5"}
    assert client.post("/items", json={"a": 1}).json == {"a": 1}
    assert client.get("/stream?delay=0").data.count(b"data:") == 5
    assert client.get("/health").json == {"status": "ok"}
    assert client.get("/error").data.startswith(b"<!doctype html>")
    agent = app.extensions["moesif"].agent
    assert agent.flush(timeout=10)
    routes = sorted(e["metadata"]["route"] for e in recorder.events())
    assert routes == ["/error", "/health", "/items", "/items/<item_id>", "/stream"]


def test_request_body_is_captured_from_a_server_stream_without_readinto(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    class ServerStream:  # what gunicorn gives: read/readline/readlines/__iter__ only
        def __init__(self, data: bytes) -> None:
            self.data = data

        def read(self, size: int = -1) -> bytes:
            size = len(self.data) if size is None or size < 0 else size
            chunk, self.data = self.data[:size], self.data[size:]
            return chunk

    from werkzeug.test import EnvironBuilder

    app = make_app()
    Moesif(app, settings)
    body = b'{"name": "from a server stream"}'
    environ = EnvironBuilder(
        method="POST", path="/items", data=body, content_type="application/json"
    ).get_environ()
    environ["wsgi.input"] = ServerStream(body)
    result = app(environ, lambda status, headers, exc=None: None)
    assert b"".join(result) == b'{"name":"from a server stream"}\n'
    result.close()  # type: ignore[attr-defined]
    assert app.extensions["moesif"].agent.flush(timeout=10)
    (event,) = recorder.events()
    assert event["request"]["body"] == {"name": "from a server stream"}
