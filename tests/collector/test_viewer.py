"""The viewer's page and files over HTTP (no browser), the security headers on every response,
and ``LocalCollector(port=...)``."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest

from moesif_agent.collector import LocalCollector
from moesif_agent.collector._viewer import CONTENT_SECURITY_POLICY, load_static
from tests.collector.helpers import make_event, post

STATIC = Path(__file__).parents[2] / "moesif_agent" / "collector" / "_static"
MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "viewer.js": "text/javascript; charset=utf-8",
    "viewer.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def test_the_page_is_served_with_a_strict_policy(shared_http: httpx.Client) -> None:
    response = shared_http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-cache"
    policy = response.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    directives = {part.split()[0]: part.split()[1:] for part in policy.split("; ")}
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["style-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    html = response.text
    assert '<script type="module" src="static/viewer.js"></script>' in html
    # Nothing the policy would block: no inline script, handler or style attribute.
    assert re.findall(r"<script(?![^>]*\ssrc=)", html) == []
    assert re.findall(r"\son[a-z]+\s*=|\sstyle\s*=|<style", html) == []


@pytest.mark.parametrize("name", sorted(MEDIA_TYPES))
def test_the_static_files_are_served(shared_http: httpx.Client, name: str) -> None:
    response = shared_http.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == MEDIA_TYPES[name]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (STATIC / name).read_bytes()


def test_every_module_the_scripts_import_is_served(shared_http: httpx.Client) -> None:
    scripts = sorted(STATIC.glob("*.js"))
    assert len(scripts) > 1
    for script in scripts:
        for imported in re.findall(r'from "\./([\w.-]+)"', script.read_text()):
            response = shared_http.get(f"/static/{imported}")
            assert response.status_code == 200, f"{script.name} imports {imported}"
            assert response.headers["content-type"] == "text/javascript; charset=utf-8"


def test_the_scripts_never_parse_data_as_html() -> None:
    """The viewer shows attacker-controlled text: it must set textContent, never HTML."""
    forbidden = re.compile(
        r"\.(innerHTML|outerHTML)\s*[+]?=|insertAdjacentHTML|document\.write|\beval\(|"
        r"new Function|createContextualFragment|DOMParser|setAttribute\(\s*['\"]on"
    )
    for script in STATIC.glob("*.js"):
        code = "\n".join(
            line for line in script.read_text().splitlines() if not line.lstrip().startswith("//")
        )
        assert forbidden.findall(code) == [], script.name


def test_the_package_ships_every_static_file() -> None:
    files = load_static()
    assert set(files) == {path.name for path in STATIC.iterdir()}
    assert {"index.html", "viewer.js", "dom.js", "format.js", "resources.js"} <= set(files)


def test_an_unknown_static_file_is_a_json_404(shared_http: httpx.Client) -> None:
    response = shared_http.get("/static/secret.py")
    assert response.status_code == 404
    assert response.json() == {"error": "no viewer file 'secret.py'"}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert shared_http.get("/static/../_app.py").status_code == 404


@pytest.mark.parametrize(
    "path, status",
    [
        ("/api", 200),
        ("/api/stats", 200),
        ("/api/events", 200),
        ("/api/events?status=bad", 400),
        ("/api/events/999999", 404),
        ("/api/users/nobody", 404),
        ("/nowhere", 404),
    ],
)
def test_api_responses_are_json_and_nosniff(
    shared_http: httpx.Client, path: str, status: int
) -> None:
    response = shared_http.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    response.json()


def test_ingest_responses_carry_the_headers_too(shared_http: httpx.Client) -> None:
    response = post(shared_http, "/v1/events", make_event())
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_collector_on_a_chosen_port(tmp_path: Path) -> None:
    port = _free_port()
    with LocalCollector(tmp_path / "c.db", port=port) as collector:
        assert collector.url == f"http://127.0.0.1:{port}"
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200


def test_a_taken_port_fails_to_start_and_creates_no_database(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        collector = LocalCollector(tmp_path / "c.db", port=port)
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            collector.start()
    assert not (tmp_path / "c.db").exists()
    # The caller's fallback: any free port.
    with LocalCollector(tmp_path / "c.db", port=0) as collector:
        assert collector.url != f"http://127.0.0.1:{port}"


def test_a_bad_port_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="0-65535"):
        LocalCollector(port=70000)
