"""The WSGI middleware under werkzeug's LintMiddleware (around it and around the app)."""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

pytest.importorskip("werkzeug")

from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import EnvironBuilder

from moesif_agent.integrations.wsgi import MoesifMiddleware, MoesifWSGIMiddleware
from tests.recorder import Recorder

App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def wrap(app: App, settings: dict[str, Any], **options: Any) -> tuple[App, MoesifWSGIMiddleware]:
    middleware = MoesifWSGIMiddleware(LintMiddleware(app), {**settings, **options})
    return LintMiddleware(middleware), middleware


class Call:
    """One request driven by hand, so a test controls iteration and close()."""

    def __init__(self, app: App, **builder: Any) -> None:
        builder.setdefault("base_url", "http://api.example")
        self.environ = EnvironBuilder(**builder).get_environ()
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.result = app(self.environ, self.start_response)
        self.iterator = iter(self.result)

    def start_response(self, status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        self.status, self.headers = status, headers
        return lambda data: None

    def body(self) -> bytes:
        try:
            return b"".join(self.iterator)
        finally:
            self.close()

    def close(self) -> None:
        close = getattr(self.result, "close", None)
        if close is not None:
            close()

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def json_app(status: str = "200 OK", body: bytes = b'{"ok": true}') -> App:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [body]

    return app


def echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    data = environ["wsgi.input"].read(length) if length else b""
    content_type = environ.get("CONTENT_TYPE") or "application/octet-stream"
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def events(middleware: MoesifWSGIMiddleware, recorder: Recorder) -> list[dict[str, Any]]:
    assert middleware.agent.flush(timeout=10)
    return recorder.events()


def test_get_json_is_recorded_with_every_field(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    app, middleware = wrap(json_app(), settings, api_version="2.1")
    call = Call(
        app,
        path="/items/7",
        query_string="q=1",
        headers={"Accept": "application/json", "X-Trace": "abc"},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    assert call.body() == b'{"ok": true}'
    (event,) = events(middleware, recorder)
    txid = call.header("X-Moesif-Transaction-Id")
    assert txid is not None and len(txid) == 36
    assert event["transaction_id"] == txid
    assert event["direction"] == "Incoming"
    request, response = event["request"], event["response"]
    assert request["uri"] == "http://api.example/items/7?q=1"
    assert request["verb"] == "GET"
    assert request["api_version"] == "2.1"
    assert request["ip_address"] == "203.0.113.9"
    assert request["headers"]["Accept"] == "application/json"
    assert request["headers"]["X-Trace"] == "abc"
    assert request["headers"]["X-Moesif-Transaction-Id"] == txid
    assert request["time"].endswith("Z") and len(request["time"]) == 24
    assert "body" not in request
    assert response["status"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["headers"]["X-Moesif-Transaction-Id"] == txid
    assert response["body"] == {"ok": True}
    assert response["transfer_encoding"] == "json"
    assert response["time"] >= request["time"]


def test_the_app_sees_the_transaction_id_and_an_incoming_one_is_reused(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append(environ["HTTP_X_MOESIF_TRANSACTION_ID"])
        start_response("200 OK", [("Content-Length", "0")])
        return []

    wrapped, middleware = wrap(app, settings)
    call = Call(
        wrapped, headers={"X-Moesif-Transaction-Id": "5b0c1f7e-8d2a-4c6b-9e1f-3a7d2c9b4e10"}
    )
    call.body()
    assert seen == ["5b0c1f7e-8d2a-4c6b-9e1f-3a7d2c9b4e10"]
    assert call.header("X-Moesif-Transaction-Id") == "5b0c1f7e-8d2a-4c6b-9e1f-3a7d2c9b4e10"
    assert (
        events(middleware, recorder)[0]["transaction_id"] == "5b0c1f7e-8d2a-4c6b-9e1f-3a7d2c9b4e10"
    )


def test_disable_transaction_id_adds_no_header(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    app, middleware = wrap(json_app(), settings, disable_transaction_id=True)
    call = Call(app)
    call.body()
    assert call.header("X-Moesif-Transaction-Id") is None
    assert len(events(middleware, recorder)[0]["transaction_id"]) == 36


BINARY = bytes(range(256)) * 4


@pytest.mark.parametrize(
    ("content_type", "payload", "expected_body", "encoding"),
    [
        ("application/json", b'{"name": "w", "n": [1, 2]}', {"name": "w", "n": [1, 2]}, "json"),
        ("application/x-www-form-urlencoded", b"a=1&b=two", "YT0xJmI9dHdv", "base64"),
        ("text/plain", "déjà vu".encode(), base64.b64encode("déjà vu".encode()).decode(), "base64"),
    ],
    ids=["json", "form", "text"],
)
def test_request_and_response_bodies(
    settings: dict[str, Any],
    recorder: Recorder,
    content_type: str,
    payload: bytes,
    expected_body: Any,
    encoding: str,
) -> None:
    app, middleware = wrap(echo_app, settings)
    call = Call(app, method="POST", data=payload, content_type=content_type)
    assert call.body() == payload
    (event,) = events(middleware, recorder)
    for part in ("request", "response"):
        assert event[part]["body"] == expected_body
        assert event[part]["transfer_encoding"] == encoding
    assert event["request"]["verb"] == "POST"


def test_binary_bodies_are_teed_whole_and_sent_as_a_note(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    app, middleware = wrap(echo_app, settings)
    call = Call(app, method="POST", data=BINARY, content_type="application/octet-stream")
    assert call.body() == BINARY
    (event,) = events(middleware, recorder)
    for part in ("request", "response"):
        assert "body" not in event[part]
        note = event["metadata"]["_moesif"][f"{part}_body"]
        assert note == {"omitted": "binary body not inspected", "size": len(BINARY)}


def test_empty_body_has_no_body_field(settings: dict[str, Any], recorder: Recorder) -> None:
    app, middleware = wrap(echo_app, settings)
    Call(app, method="POST", data=b"").body()
    (event,) = events(middleware, recorder)
    assert "body" not in event["request"]
    assert "body" not in event["response"]


def test_chunked_request_body_is_teed_as_the_app_reads_it(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        first = next(iter(stream))
        rest = b"".join(iter(lambda: stream.read(3), b""))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [first, rest]

    wrapped, middleware = wrap(app, settings)
    data = b"line one\nsecond part of a chunked body"
    call = Call(
        wrapped,
        method="POST",
        input_stream=io.BytesIO(data),
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert call.body() == data
    (event,) = events(middleware, recorder)
    assert base64.b64decode(event["request"]["body"]) == data


def test_the_request_body_is_never_read_ahead(settings: dict[str, Any], recorder: Recorder) -> None:
    remaining: list[int] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input"].read(4)
        remaining.append(len(source.read()))  # what the app did not read is still there
        start_response("200 OK", [("Content-Length", "0")])
        return []

    source = io.BytesIO(b"0123456789")
    wrapped, middleware = wrap(app, settings)
    Call(wrapped, method="POST", input_stream=source, content_length=10).body()
    assert remaining == [6]
    (event,) = events(middleware, recorder)
    assert base64.b64decode(event["request"]["body"]) == b"0123"


def test_streamed_chunks_reach_the_client_before_the_next_is_produced(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    produce_second = threading.Event()
    produced: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        produced.append("first")
        yield b"data: 1\n\n"
        assert produce_second.wait(5)
        produced.append("second")
        yield b"data: 2\n\n"

    wrapped, middleware = wrap(app, settings)
    call = Call(wrapped, path="/stream")
    assert next(call.iterator) == b"data: 1\n\n"
    assert produced == ["first"]  # the client has chunk one; chunk two does not exist yet
    produce_second.set()
    assert next(call.iterator) == b"data: 2\n\n"
    assert call.body() == b""
    (event,) = events(middleware, recorder)
    assert base64.b64decode(event["response"]["body"]) == b"data: 1\n\ndata: 2\n\n"


def test_file_wrapper_passes_through_untouched(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"file contents"), 4)

    class FileWrapper:
        def __init__(self, file: io.BytesIO, size: int) -> None:
            self.file, self.size = file, size

        def __iter__(self) -> Iterator[bytes]:
            return iter(lambda: self.file.read(self.size), b"")

        def close(self) -> None:
            self.file.close()

    middleware = MoesifWSGIMiddleware(app, settings)
    environ = EnvironBuilder().get_environ()
    environ["wsgi.file_wrapper"] = FileWrapper
    result = middleware(environ, lambda status, headers, exc=None: None)
    assert isinstance(result, FileWrapper)
    assert b"".join(result) == b"file contents"
    result.close()
    (event,) = events(middleware, recorder)
    assert event["response"]["status"] == 200
    assert event["metadata"]["_moesif"]["response_body"] == {"omitted": "file response"}


def test_an_app_exception_is_recorded_and_propagates_unchanged(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    class Boom(Exception):
        pass

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raise Boom("original")

    middleware = MoesifWSGIMiddleware(app, settings)
    with pytest.raises(Boom, match="original"):
        middleware(EnvironBuilder(path="/error").get_environ(), lambda *a: None)
    (event,) = events(middleware, recorder)
    assert event["response"]["status"] == 500
    assert event["metadata"]["_moesif"]["error"] == {"class": "Boom", "message": "original"}


def test_a_generator_that_raises_midway_is_recorded(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial "
        raise ValueError("midway")

    middleware = MoesifWSGIMiddleware(app, settings)
    call = Call(middleware)
    assert next(call.iterator) == b"partial "
    with pytest.raises(ValueError, match="midway"):
        next(call.iterator)
    call.close()
    (event,) = events(middleware, recorder)
    assert event["response"]["status"] == 200  # what the client got before the failure
    assert event["metadata"]["_moesif"]["error"]["class"] == "ValueError"
    assert base64.b64decode(event["response"]["body"]) == b"partial "


def test_close_is_called_exactly_once_and_a_disconnect_still_records(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    closed: list[int] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"a"
            yield b"b"

        def close(self) -> None:
            closed.append(1)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    wrapped, middleware = wrap(app, settings)
    call = Call(wrapped)
    assert next(call.iterator) == b"a"
    call.close()  # the client went away after the first chunk
    assert closed == [1]
    (event,) = events(middleware, recorder)
    assert event["response"]["status"] == 200
    assert event["metadata"]["_moesif"]["aborted"]
    assert base64.b64decode(event["response"]["body"]) == b"a"


def test_head_204_and_304(settings: dict[str, Any], recorder: Recorder) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status = {"/204": "204 No Content", "/304": "304 Not Modified"}.get(
            environ["PATH_INFO"], "200 OK"
        )
        head = environ["REQUEST_METHOD"] == "HEAD"
        headers = {"204 No Content": [("Content-Length", "0")], "304 Not Modified": []}.get(
            status, [] if head else [("Content-Length", "5")]
        )
        start_response(status, headers)
        return [b"hello"] if status == "200 OK" and not head else []

    wrapped, middleware = wrap(app, settings)
    Call(wrapped, method="HEAD", path="/").body()
    Call(wrapped, path="/204").body()
    Call(wrapped, path="/304").body()
    got = {(e["request"]["verb"], e["response"]["status"]) for e in events(middleware, recorder)}
    assert got == {("HEAD", 200), ("GET", 204), ("GET", 304)}
    assert all("body" not in e["response"] for e in recorder.events())


def test_non_ascii_headers(settings: dict[str, Any], recorder: Recorder) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("X-Name", "caf\xe9"), ("Content-Length", "0")])
        return []

    wrapped, middleware = wrap(app, settings)
    Call(wrapped, headers={"X-City": "M\xfcnchen"}).body()
    (event,) = events(middleware, recorder)
    assert event["request"]["headers"]["X-City"] == "M\xfcnchen"
    assert event["response"]["headers"]["X-Name"] == "caf\xe9"


def test_mount_prefix_is_part_of_the_uri(settings: dict[str, Any], recorder: Recorder) -> None:
    app, middleware = wrap(json_app(), settings)
    Call(app, base_url="https://api.example:8443/api/v1", path="/items").body()
    (event,) = events(middleware, recorder)
    assert event["request"]["uri"] == "https://api.example:8443/api/v1/items"


def test_huge_bodies_are_truncated_with_a_marker(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    payload = json.dumps({"data": "x" * 50_000}).encode()
    app, middleware = wrap(echo_app, settings, max_body_size=1000)
    assert Call(app, method="POST", data=payload, content_type="application/json").body() == (
        payload
    )
    (event,) = events(middleware, recorder)
    for part in ("request", "response"):
        assert event[part]["transfer_encoding"] == "base64"
        assert base64.b64decode(event[part]["body"]) == payload[:1000]
        note = event["metadata"]["_moesif"][f"{part}_body"]
        assert note == {"truncated": True, "size": len(payload), "captured": 1000}


def test_log_body_false_captures_no_body_and_leaves_wsgi_input_alone(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    streams: list[Any] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        streams.append(environ["wsgi.input"])
        return echo_app(environ, start_response)

    middleware = MoesifWSGIMiddleware(app, {**settings, "log_body": False})
    environ = EnvironBuilder(method="POST", data=b'{"a": 1}').get_environ()
    original = environ["wsgi.input"]
    result = middleware(environ, lambda *a: None)
    assert b"".join(result) == b'{"a": 1}'
    result.close()  # type: ignore[attr-defined]
    assert streams == [original]
    (event,) = events(middleware, recorder)
    assert "body" not in event["request"]
    assert "body" not in event["response"]


def test_the_apps_header_list_is_not_mutated(settings: dict[str, Any], recorder: Recorder) -> None:
    headers = [("Content-Type", "text/plain"), ("Content-Length", "2")]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", headers)
        return [b"ok"]

    wrapped, _ = wrap(app, settings)
    call = Call(wrapped)
    call.body()
    assert headers == [("Content-Type", "text/plain"), ("Content-Length", "2")]
    assert call.header("X-Moesif-Transaction-Id")


def test_callbacks_are_called_once_each_with_the_reference_signatures(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    calls: list[str] = []

    def identify_user(app: Any, environ: dict[str, Any], response_headers: Any = None) -> str:
        calls.append("user")
        assert response_headers["Content-Type"] == "application/json"
        return "user-1"

    def identify_company(app: Any, environ: dict[str, Any]) -> int:
        calls.append("company")
        return 42  # ints become strings

    def get_session_token(app: Any, environ: dict[str, Any]) -> str:
        calls.append("session")
        return "sess-1"

    def get_metadata(app: Any, environ: dict[str, Any]) -> dict[str, Any]:
        calls.append("metadata")
        return {"region": "eu"}

    def skip(app: Any, environ: dict[str, Any]) -> bool:
        calls.append("skip")
        return environ["PATH_INFO"] == "/skip-me"

    app, middleware = wrap(
        json_app(),
        settings,
        IDENTIFY_USER=identify_user,
        IDENTIFY_COMPANY=identify_company,
        GET_SESSION_TOKEN=get_session_token,
        GET_METADATA=get_metadata,
        SKIP=skip,
    )
    Call(app, path="/items").body()
    assert sorted(calls) == ["company", "metadata", "session", "skip", "user"]
    calls.clear()
    Call(app, path="/skip-me").body()
    assert calls == ["skip"]
    (event,) = events(middleware, recorder)
    assert event["user_id"] == "user-1"
    assert event["company_id"] == "42"
    assert event["session_token"] == "sess-1"
    assert event["metadata"] == {"region": "eu"}
    assert middleware.agent.stats()["skipped"] == 1


def test_raising_callbacks_are_ignored_and_the_request_goes_on(
    settings: dict[str, Any], recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any) -> str:
        raise RuntimeError("callback bug")

    app, middleware = wrap(
        json_app(), settings, identify_user=broken, get_metadata=broken, skip=broken
    )
    for _ in range(3):
        assert Call(app).body() == b'{"ok": true}'
    recorded = events(middleware, recorder)
    assert len(recorded) == 3
    assert "user_id" not in recorded[0]
    assert caplog.text.count("the identify_user callback raised RuntimeError") == 1


def test_user_id_from_the_authorization_header(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    app, middleware = wrap(json_app(), settings)
    credentials = base64.b64encode(b"alice:pw").decode()
    Call(app, headers={"Authorization": f"Basic {credentials}"}).body()
    (event,) = events(middleware, recorder)
    assert event["user_id"] == "alice"
    assert event["request"]["headers"]["Authorization"] == "Basic [REDACTED]"


def test_declarative_skips(settings: dict[str, Any], recorder: Recorder) -> None:
    app, middleware = wrap(
        json_app(), settings, skip_paths=["^/internal/"], skip_methods=["OPTIONS"]
    )
    Call(app, path="/internal/x").body()
    Call(app, method="OPTIONS", path="/items").body()
    Call(app, path="/items").body()
    assert [e["request"]["uri"] for e in events(middleware, recorder)] == [
        "http://api.example/items"
    ]
    assert middleware.agent.stats()["skipped"] == 2


def test_skip_paths_that_only_work_alone_still_skip(
    settings: dict[str, Any], recorder: Recorder
) -> None:
    """Each entry is its own regex: a global flag or a group name used twice must not turn
    the list into a startup error (they cannot be joined into one pattern)."""
    paths = ["(?i)^/HEALTH", "(?P<id>^/internal/)", "(?P<id>^/admin/)"]
    app, middleware = wrap(json_app(), settings, skip_paths=paths)
    for path in ("/health", "/internal/x", "/admin/y", "/items"):
        Call(app, path=path).body()
    assert [e["request"]["uri"] for e in events(middleware, recorder)] == [
        "http://api.example/items"
    ]


def test_an_async_callback_on_a_sync_app_is_reported_at_startup(
    settings: dict[str, Any], recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    async def identify_user(app: Any, environ: Any) -> str:
        return "alice"

    with caplog.at_level(logging.ERROR, logger="moesif_agent"):
        app, middleware = wrap(json_app(), settings, identify_user=identify_user)
        assert "identify_user is async, which only ASGI apps support" in caplog.text
        assert Call(app).body() == b'{"ok": true}'
    (event,) = events(middleware, recorder)
    assert "user_id" not in event
    assert caplog.text.count("identify_user is async") == 1


def test_middleware_with_equal_options_share_one_agent(settings: dict[str, Any]) -> None:
    one = MoesifWSGIMiddleware(json_app(), settings)
    two = MoesifMiddleware(json_app(), dict(settings))
    other = MoesifWSGIMiddleware(json_app(), settings, log_body=False)
    assert one.agent is two.agent
    assert one.agent is not other.agent


def test_disabled_agent_is_a_pass_through(settings: dict[str, Any], recorder: Recorder) -> None:
    app, middleware = wrap(json_app(), settings, enabled=False)
    call = Call(app)
    assert call.body() == b'{"ok": true}'
    assert call.header("X-Moesif-Transaction-Id") is None
    assert middleware.agent.flush(timeout=1)
    assert recorder.events() == []
