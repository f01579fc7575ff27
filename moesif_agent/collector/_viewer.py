"""The event viewer (the page at ``/`` and its files under ``/static/``) and the security
headers every collector response carries.

The viewer shows captured traffic, which whoever sends requests to the monitored app controls:
the page builds its DOM with ``textContent`` only, and the Content-Security-Policy below is the
second line of defence (no inline script, nothing loaded from elsewhere) should a bug ever let
captured text be parsed as HTML.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ._errors import ClientError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii")),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
# Explicit types rather than the mimetypes registry: with nosniff a browser refuses a script
# served as text/plain, which some systems' registries say for .js.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_PACKAGE = __name__.rpartition(".")[0]
# Revalidate on every load, so a page opened after an upgrade never runs yesterday's script.
_NO_CACHE = {"Cache-Control": "no-cache"}


class SecurityHeadersMiddleware:
    """Adds ``SECURITY_HEADERS`` to every HTTP response (a header already set is kept)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(pair for pair in SECURITY_HEADERS if pair[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def load_static() -> dict[str, tuple[bytes, str]]:
    """The viewer's files by name, with their media types (read once, from the package)."""
    files: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files(_PACKAGE).joinpath("_static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in MEDIA_TYPES:
            files[entry.name] = (entry.read_bytes(), MEDIA_TYPES[suffix])
    return files


def viewer_routes() -> list[BaseRoute]:
    """``GET /`` (the viewer page) and ``GET /static/{name}`` (its scripts and styles)."""
    files = load_static()
    page, page_type = files["index.html"]

    async def index(request: Request) -> Response:
        return Response(page, media_type=page_type, headers=_NO_CACHE)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        found = files.get(name)
        if found is None:
            raise ClientError(404, f"no viewer file {name!r}")
        content, media_type = found
        return Response(content, media_type=media_type, headers=_NO_CACHE)

    return [
        Route("/", index, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
    ]
