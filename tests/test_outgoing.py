"""Outgoing calls made with httpx and requests, captured against real loopback servers."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from moesif_agent import Agent, _guard
from moesif_agent.integrations import _outgoing
from tests.recorder import Recorder

requests = pytest.importorskip("requests")


class Target:
    """The third-party API the app calls: /json, /gzip, /echo (POST), /stream, /fail."""

    def __init__(self) -> None:
        self.second_chunk = threading.Event()
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/json":
                    self._send(
                        200, b'{"id": 1, "secret": "s"}', {"Content-Type": "application/json"}
                    )
                elif path == "/gzip":
                    body = gzip.compress(b'{"zipped": true}')
                    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
                    self._send(200, body, headers)
                elif path == "/stream":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self._chunk(b"first ")
                    target.second_chunk.wait(5)
                    self._chunk(b"second")
                    self._chunk(b"")
                else:
                    self._send(404, b"not found", {"Content-Type": "text/plain"})

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._send(201, data, {"Content-Type": self.headers.get("Content-Type", "")})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.second_chunk.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.stop()


@pytest.fixture
def capturing(make_agent: Callable[..., Agent]) -> Iterator[Callable[..., Agent]]:
    def make(**options: Any) -> Agent:
        return make_agent(capture_outgoing=True, **options)

    yield make
    _outgoing.uninstall()


def outgoing(agent: Agent, recorder: Recorder) -> list[dict[str, Any]]:
    assert agent.flush(timeout=10)
    return [e for e in recorder.events() if e["direction"] == "Outgoing"]


def test_httpx_sync_calls_are_captured(
    target: Target, recorder: Recorder, capturing: Callable[..., Agent]
) -> None:
    agent = capturing()
    with httpx.Client() as client:
        assert client.get(f"{target.url}/json", params={"q": "1"}).json()["id"] == 1
        assert client.get(f"{target.url}/gzip").json() == {"zipped": True}
        posted = client.post(f"{target.url}/echo", json={"password": "p", "n": 2})
        assert posted.status_code == 201
    by_path = {
        e["request"]["uri"].split("?")[0].rsplit("/", 1)[1]: e for e in outgoing(agent, recorder)
    }
    plain = by_path["json"]
    assert plain["request"]["uri"] == f"{target.url}/json?q=1"
    assert plain["request"]["verb"] == "GET"
    assert plain["response"]["status"] == 200
    assert plain["response"]["body"] == {"id": 1, "secret": "[REDACTED]"}
    assert by_path["gzip"]["response"]["body"] == {"zipped": True}
    assert by_path["echo"]["request"]["body"] == {"password": "[REDACTED]", "n": 2}
    assert by_path["echo"]["response"]["status"] == 201
    assert all("host" in {k.lower() for k in e["request"]["headers"]} for e in by_path.values())


def test_httpx_async_calls_are_captured(
    target: Target, recorder: Recorder, capturing: Callable[..., Agent]
) -> None:
    agent = capturing()

    async def call() -> Any:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{target.url}/json")).json()

    assert asyncio.run(call()) == {"id": 1, "secret": "s"}
    (event,) = outgoing(agent, recorder)
    assert event["response"]["body"]["id"] == 1


def test_requests_calls_are_captured_with_callbacks(
    target: Target, recorder: Recorder, capturing: Callable[..., Agent]
) -> None:
    agent = capturing(
        identify_user_outgoing=lambda req, res: "caller-1",
        get_metadata_outgoing=lambda req, res: {"status_seen": res.status_code},
        skip_outgoing=lambda req, res: req.url.endswith("/skipme"),
    )
    assert requests.get(f"{target.url}/json", timeout=5).json()["id"] == 1
    assert requests.post(f"{target.url}/echo", data=b"raw bytes", timeout=5).content == b"raw bytes"
    assert requests.get(f"{target.url}/skipme", timeout=5).status_code == 404
    events = outgoing(agent, recorder)
    assert len(events) == 2
    json_event = next(e for e in events if e["request"]["uri"].endswith("/json"))
    assert json_event["user_id"] == "caller-1"
    assert json_event["metadata"] == {"status_seen": 200}
    echo = next(e for e in events if e["request"]["verb"] == "POST")
    assert base64.b64decode(echo["request"]["body"]) == b"raw bytes"


@pytest.mark.parametrize("library", ["httpx", "requests"])
def test_streamed_responses_still_stream(
    target: Target, recorder: Recorder, capturing: Callable[..., Agent], library: str
) -> None:
    agent = capturing()
    if library == "httpx":
        with httpx.Client() as client, client.stream("GET", f"{target.url}/stream") as response:
            chunks = response.iter_raw()
            assert next(chunks) == b"first "  # before the server has produced the second
            target.second_chunk.set()
            assert b"".join(chunks) == b"second"
    else:
        response = requests.get(f"{target.url}/stream", stream=True, timeout=5)
        chunks = response.iter_content(chunk_size=None)
        assert next(chunks) == b"first "
        target.second_chunk.set()
        assert b"".join(chunks) == b"second"
        response.close()
    (event,) = outgoing(agent, recorder)
    assert base64.b64decode(event["response"]["body"]) == b"first second"


def test_the_agents_own_uploads_are_never_captured(
    recorder: Recorder, capturing: Callable[..., Agent]
) -> None:
    agent = capturing()
    agent.record(
        {
            "request": {
                "time": "2024-01-01T00:00:00.000Z",
                "uri": "http://x/",
                "verb": "GET",
                "headers": {},
            }
        }
    )
    assert agent.flush(timeout=10)
    with httpx.Client() as client:  # a call to the collector's address, made by the app
        client.get(f"{recorder.url}/v1/config")
    assert agent.flush(timeout=10)
    assert [e["direction"] for e in recorder.events()] == ["Incoming"]


def test_a_failed_call_raises_to_the_caller_and_is_recorded(
    recorder: Recorder, capturing: Callable[..., Agent]
) -> None:
    agent = capturing()
    with pytest.raises(httpx.ConnectError), httpx.Client() as client:
        client.get("http://127.0.0.1:9/down")
    (event,) = outgoing(agent, recorder)
    assert "response" not in event
    assert event["metadata"]["_moesif"]["error"]["class"] == "ConnectError"


def test_a_failure_inside_capture_leaves_the_callers_call_intact(
    target: Target,
    recorder: Recorder,
    capturing: Callable[..., Agent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = capturing()
    monkeypatch.setattr(_guard, "reraise", False)  # production behaviour: fail open

    def broken(*args: Any) -> None:
        raise RuntimeError("capture bug")

    monkeypatch.setattr(_outgoing, "_start", broken)
    monkeypatch.setattr(_outgoing, "_set_response", broken)
    with httpx.Client() as client:
        response = client.get(f"{target.url}/json")
    assert response.json() == {"id": 1, "secret": "s"}
    assert requests.get(f"{target.url}/json", timeout=5).json()["id"] == 1
    assert outgoing(agent, recorder) == []


def test_uninstall_restores_the_libraries(capturing: Callable[..., Agent]) -> None:
    original = httpx.Client.send
    capturing()
    assert httpx.Client.send is not original or "httpx.Client" in _outgoing._patched
    _outgoing.uninstall()
    assert "httpx.Client" not in _outgoing._patched
    assert json.dumps  # the module stays importable and usable
