"""What a web page the user visits can do to the local collector: read nothing (no CORS),
delete nothing (cross-site requests refused), and reach nothing by DNS rebinding (foreign
Host headers refused). Real requests to a real collector, as a browser would send them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from moesif_agent.collector import LocalCollector
from moesif_agent.collector._security import warn_if_exposed
from tests.collector.helpers import APP_ID, make_event, post

EVIL = "http://evil.example"


def _port(collector: LocalCollector) -> str:
    return collector.url.rpartition(":")[2]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/events"), ("GET", "/api/stats"), ("GET", "/v1/config"), ("POST", "/v1/events")],
)
def test_no_response_lets_another_origin_read_it(
    http: httpx.Client, method: str, path: str
) -> None:
    content = None if method == "GET" else json.dumps(make_event())
    response = http.request(method, path, content=content, headers={"Origin": EVIL})
    assert response.status_code < 400
    assert not [name for name in response.headers if name.startswith("access-control-")]


@pytest.mark.parametrize("path", ["/api/data", "/api/events", "/v1/events/batch"])
def test_preflights_are_refused(http: httpx.Client, path: str) -> None:
    response = http.options(
        path,
        headers={
            "Origin": EVIL,
            "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "x-moesif-application-id",
        },
    )
    assert response.status_code == 403
    assert "no CORS" in response.json()["error"]
    assert not [name for name in response.headers if name.startswith("access-control-")]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Origin": "http://localhost:3000"},  # another local app is another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:3000"},
    ],
)
def test_a_cross_site_clear_is_refused(
    collector: LocalCollector, http: httpx.Client, headers: dict[str, str]
) -> None:
    assert post(http, "/v1/events", make_event()).status_code == 201

    response = http.delete("/api/data", headers=headers)

    assert response.status_code == 403
    assert "refused" in response.json()["error"]
    assert collector.stats()["events"] == 1


def test_the_viewer_and_scripts_may_clear(collector: LocalCollector, http: httpx.Client) -> None:
    assert post(http, "/v1/events/batch", [make_event(), make_event()]).status_code == 201
    post(http, "/v1/users", {"user_id": "u1"})
    same_origin = {"Origin": collector.url, "Sec-Fetch-Site": "same-origin"}

    cleared = http.delete("/api/data", headers=same_origin)

    assert cleared.status_code == 200
    assert cleared.json()["deleted"] == {
        "events": 2,
        "actions": 0,
        "users": 1,
        "companies": 0,
        "subscriptions": 0,
    }
    assert collector.stats()["events"] == 0
    assert http.get("/api/events", params={"q": "example"}).json()["items"] == []
    assert post(http, "/v1/events", make_event()).status_code == 201  # curl: no Origin
    assert collector.clear()["events"] == 1


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io"])
@pytest.mark.parametrize("path", ["/api/events", "/api/stats", "/", "/static/viewer.js"])
def test_a_rebinding_host_is_refused(
    collector: LocalCollector, http: httpx.Client, host: str, path: str
) -> None:
    response = http.get(path, headers={"Host": host.format(port=_port(collector))})
    assert response.status_code == 403
    assert "is not an address of this collector" in response.json()["error"]
    assert "--allow-host" in response.json()["error"]


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:{port}", "localhost:{port}", "localhost", "[::1]:{port}", "viewer.localhost:1"],
)
def test_addresses_and_localhost_are_answered(
    collector: LocalCollector, http: httpx.Client, host: str
) -> None:
    response = http.get("/api/stats", headers={"Host": host.format(port=_port(collector))})
    assert response.status_code == 200


def test_agents_reach_v1_by_any_name(http: httpx.Client) -> None:
    response = http.post(
        "/v1/events",
        json=make_event(),
        headers={"Host": "host.docker.internal:8787", "X-Moesif-Application-Id": APP_ID},
    )
    assert response.status_code == 201


def test_allowed_host_names(tmp_path: Path) -> None:
    with LocalCollector(tmp_path / "c.db", allowed_hosts=["collector.lan"]) as collector:
        ok = httpx.get(collector.url + "/api/stats", headers={"Host": "collector.lan:1"})
        refused = httpx.get(collector.url + "/api/stats", headers={"Host": "other.lan"})
    assert (ok.status_code, refused.status_code) == (200, 403)


def test_cross_site_reads_are_refused_but_links_to_the_viewer_work(http: httpx.Client) -> None:
    cross_site = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}
    assert http.get("/api/events", headers=cross_site).status_code == 403
    assert http.get("/static/viewer.js", headers=cross_site).status_code == 403
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert http.get("/", headers=link).status_code == 200
    assert http.get("/api/events", headers=link).status_code == 403


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        *[("0.0.0.0", True), ("::", True), ("192.168.1.5", True), ("myhost", True)],
        *[("127.0.0.1", False), ("::1", False), ("localhost", False), ("127.0.0.2", False)],
    ],
)
def test_a_non_loopback_address_is_warned_about(
    host: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="moesif_agent.collector"):
        warn_if_exposed(host)
    messages = [r.getMessage() for r in caplog.records]
    if warned:
        (message,) = messages
        assert f"listens on {host}, which is not a loopback address" in message
        assert "captured request and response (headers, bodies, user ids)" in message
    else:
        assert messages == []
