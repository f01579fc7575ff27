"""Keeping captured traffic on this machine.

The collector holds whatever the monitored app saw: request and response headers and bodies,
user ids. Any web page the user visits can make the browser send requests to
``127.0.0.1:8787``; three things keep such a page from reading or deleting that data:

- no CORS: without ``Access-Control-Allow-Origin`` a browser lets no other origin read an
  answer, and without answering preflights it sends no cross-origin DELETE, nor a POST with
  the application id header;
- browsers say where a request comes from (``Sec-Fetch-Site``, ``Origin``): requests from
  another site are refused, but for following a link to the viewer page;
- DNS rebinding (a page on ``evil.example`` whose name is then pointed at 127.0.0.1, making
  its requests "same-origin") shows in the ``Host`` header: outside ``/v1`` only an IP
  address, ``localhost`` or a name allowed explicitly (``--allow-host``) is answered.
  Agents may reach ``/v1`` by any name (``host.docker.internal``...), so it is not checked
  there.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

_SAFE_METHODS = frozenset({"GET", "HEAD"})
_BROWSER_OWN = frozenset({"same-origin", "none"})  # Sec-Fetch-Site of the viewer, or typed
_MAX_LOGGED = 100


def is_loopback(host: str) -> bool:
    """True for ``127.0.0.1``, ``::1``, ``localhost`` and the like."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def warn_if_exposed(host: str) -> None:
    if not is_loopback(host):
        logger.warning(
            "the collector listens on %s, which is not a loopback address: anyone who can "
            "reach this machine can read every captured request and response (headers, "
            "bodies, user ids) through the viewer and /api, and clear them. Use --host "
            "127.0.0.1 unless that is what you want.",
            host,
        )


def _name_of(host_header: str) -> str:
    """``example.com:8787`` -> ``example.com``; ``[::1]:8787`` -> ``::1``."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")].lower()
    return host_header.rpartition(":")[0].lower() if ":" in host_header else host_header.lower()


class HostPolicy:
    """Which ``Host`` headers the read API and the viewer answer: IP addresses (a rebinding
    attack needs a name), ``localhost`` and ``*.localhost`` (browsers resolve those
    themselves), the name the collector was bound to, and ``allowed`` names (``*``: any)."""

    def __init__(self, bound_host: str = "127.0.0.1", allowed: Collection[str] = ()) -> None:
        self.any = "*" in allowed
        self.names = frozenset({"localhost", bound_host.lower(), *(a.lower() for a in allowed)})

    def allows(self, host_header: str) -> bool:
        name = _name_of(host_header)
        if self.any or name in self.names or name.endswith(".localhost"):
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True


class LocalOnlyMiddleware:
    """Refuses (403) what only another web site, or a rebound DNS name, would send."""

    def __init__(self, app: ASGIApp, hosts: HostPolicy) -> None:
        self.app = app
        self.hosts = hosts
        self._logged: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = self.problem(scope)
            if problem is not None:
                await self._refuse(scope, problem, send)
                return
        await self.app(scope, receive, send)

    def problem(self, scope: Scope) -> str | None:
        headers = {name.decode("latin-1"): value for name, value in scope["headers"]}
        method, path = scope["method"], scope["path"]
        site = headers.get("sec-fetch-site", b"").decode("latin-1")
        if method == "OPTIONS" and "access-control-request-method" in headers:
            return "cross-origin requests are not answered (no CORS): use the viewer at /"
        if site and site not in _BROWSER_OWN:
            # Following a link to the viewer from elsewhere is fine: the page then loads its
            # data with same-origin requests.
            navigation = headers.get("sec-fetch-mode") == b"navigate" and path == "/"
            if not (navigation and method in _SAFE_METHODS):
                return f"a request from another site (Sec-Fetch-Site: {site}) is refused"
        if path.startswith("/v1/"):
            return None
        host = headers.get("host", b"").decode("latin-1")
        if not self.hosts.allows(host):
            return (
                f"Host {host[:100]!r} is not an address of this collector (a DNS rebinding "
                f"attempt?); open it as http://127.0.0.1:<port>/, or start it with "
                f"--allow-host {_name_of(host)[:100] or 'NAME'}"
            )
        origin = headers.get("origin")
        if method not in _SAFE_METHODS and origin is not None:
            if origin.decode("latin-1") not in (f"http://{host}", f"https://{host}"):
                return f"a {method} from origin {origin.decode('latin-1')[:100]!r} is refused"
        return None

    async def _refuse(self, scope: Scope, problem: str, send: Send) -> None:
        if len(self._logged) < _MAX_LOGGED and problem not in self._logged:
            self._logged.add(problem)  # once per distinct problem: a page may retry forever
            logger.warning("collector refused %s %s: %s", scope["method"], scope["path"], problem)
        body = json.dumps({"error": problem}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
