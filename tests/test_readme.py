"""The README's snippets, run as written: the local quickstart (in-process here; the same
commands in a fresh venv are integrations/test_quickstart_venv.py), the Bottle, Falcon and
Pyramid snippets, and the testing section, whose caveat is checked too."""

from __future__ import annotations

import shlex
import sys
import types
from typing import Any

import pytest

pytest.importorskip("flask")

import httpx
from werkzeug.test import Client

from moesif_agent import _cli
from moesif_agent._agent import all_agents
from moesif_agent.integrations.flask import Moesif
from tests.readme import APP_PORT, block_starting, section, shell_lines, with_ports
from tests.recorder import Recorder


def run_snippet(code: str, **names: Any) -> dict[str, Any]:
    """Run a README snippet as a module of its own, given the ``names`` it assumes exist."""
    module = types.ModuleType("readme_snippet")
    module.__dict__.update(names)
    sys.modules[module.__name__] = module  # Pyramid's Configurator looks its caller up there
    try:
        exec(compile(code, "<README snippet>", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module.__dict__


def flush() -> None:
    for agent in all_agents():
        assert agent.flush(timeout=10)


def example_app() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXAMPLE_INSTRUMENT", "0")  # its module-level app, if imported first here
        from examples.flask_app import create_app

    return create_app(instrument=False)


def test_the_local_quickstart_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("uvicorn")
    from moesif_agent.collector import LocalCollector

    text = section("Try it locally in two minutes")
    lines = shell_lines(text)
    assert 'pip install "moesif-agent[flask,collector]"' in lines
    assert "moesif-agent check" in lines
    with LocalCollector() as collector:
        port = int(collector.url.rsplit(":", 1)[1])
        commands = with_ports("\n".join(lines), port, APP_PORT).splitlines()
        (export,) = [line for line in commands if line.startswith("export ")]
        for assignment in shlex.split(export)[1:]:
            name, value = assignment.split("=", 1)
            monkeypatch.setenv(name, value)

        assert _cli.main(["check"]) == 0
        assert f"events go to {collector.url}" in capsys.readouterr().out

        app = run_snippet(block_starting(text, "python", "from flask import Flask"))["app"]
        (curl,) = [line for line in commands if line.startswith("curl ")]
        path = httpx.URL(curl.split()[1]).path
        response = app.test_client().get(path)
        assert response.get_json() == {"hello": "world"}
        flush()

        (event,) = httpx.get(f"{collector.url}/api/events").json()["items"]
        assert event["request"]["uri"].endswith("/hello/world")
        assert event["response"]["status"] == 200
        assert event["metadata"]["route"] == "/hello/<name>"


@pytest.mark.parametrize(
    "framework",
    [
        "bottle",
        "falcon",
        # WebOb, under Pyramid, imports the cgi module, deprecated since Python 3.11
        pytest.param(
            "pyramid", marks=pytest.mark.filterwarnings("ignore:'cgi':DeprecationWarning")
        ),
    ],
)
def test_the_wsgi_framework_snippets(
    framework: str, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = pytest.importorskip(framework)
    monkeypatch.setenv("MOESIF_BASE_URI", recorder.url)  # the snippets mean production
    first_line = {
        "bottle": "import bottle",
        "falcon": "import falcon",
        "pyramid": "from pyramid.config import Configurator",
    }[framework]
    code = block_starting(section("Add it to your app"), "python", first_line)
    served: list[Any] = []
    if framework == "bottle":
        monkeypatch.setattr(module, "run", lambda app, **kwargs: served.append(app))
    names = run_snippet(code)

    path, status = "/hello", 200
    if framework == "bottle":  # routes still go on the original app, after the wrapping
        names["app"].route("/hello", callback=lambda: {"hello": "bottle"})
        (wsgi_app,) = served
    elif framework == "falcon":

        class Hello:
            def on_get(self, req: Any, resp: Any) -> None:
                resp.media = {"hello": "falcon"}

        names["app"].add_route("/hello", Hello())
        wsgi_app = names["application"]
    else:  # the snippet's Configurator has no routes: any path is a recorded 404
        wsgi_app = names["app"]
        path, status = "/nothing-here", 404

    response = Client(wsgi_app).get(path)
    assert response.status_code == status
    response.close()  # see the testing section: a test client's response ends when closed
    flush()
    (event,) = recorder.events()
    assert event["request"]["uri"].endswith(path)
    assert event["response"]["status"] == status


def test_the_dry_run_snippet() -> None:
    code = block_starting(
        section("Testing your app with the agent"),
        "python",
        "from moesif_agent.integrations.flask import Moesif",
    )
    names = run_snippet(code, app=example_app())
    assert names["moesif"].agent.dry_run_events[-1]["request"]["verb"] == "GET"


def test_the_local_collector_snippet() -> None:
    pytest.importorskip("uvicorn")
    code = block_starting(
        section("Testing your app with the agent"),
        "python",
        "from moesif_agent.collector import LocalCollector",
    )
    run_snippet(code, app=example_app())


def test_a_test_client_response_is_recorded_once_read_or_closed() -> None:
    """The caveat the testing section states, as Flask's test client shows it."""
    app = example_app()
    moesif = Moesif(app, dry_run=True)
    client = app.test_client()

    unread = client.get("/items/1")
    assert moesif.agent.flush(timeout=5)
    assert moesif.agent.dry_run_events == []  # not complete yet: never read, never closed

    assert client.get("/items/2").get_json()["id"] == "2"  # read
    with client.get("/items/3"):  # closed
        pass
    client.get("/items/4", buffered=True)
    unread.close()
    assert moesif.agent.flush(timeout=5)
    uris = sorted(e["request"]["uri"].rsplit("/", 1)[1] for e in moesif.agent.dry_run_events)
    assert uris == ["1", "2", "3", "4"]
