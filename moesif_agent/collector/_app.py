"""The collector's Starlette app: the Collector API (``/v1``), the read API (``/api``) and the
event viewer (``/``).

Writes go through ``_ingest``; reads (``_readapi``) run on worker threads with their own SQLite
connections. No CORS anywhere: the viewer is same-origin and agents are not browsers
(``_security``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Collection
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ._errors import ClientError, StoreError
from ._ingest import INGEST_ENDPOINTS, Ingest, ingest
from ._readapi import READ_API, read_routes
from ._security import HostPolicy, LocalOnlyMiddleware
from ._store import Store
from ._viewer import SecurityHeadersMiddleware, viewer_routes
from ._watch import RemoteDocuments, WatchedJSON

logger = logging.getLogger(__name__)

APP_ID_HEADER = "x-moesif-application-id"
CONFIG_ETAG_HEADER = "X-Moesif-Config-ETag"


class _Throttle:
    """At most ``burst`` warnings per ``window`` seconds; says how many it held back."""

    def __init__(self, burst: int = 20, window: float = 60.0) -> None:
        self.burst = burst
        self.window = window
        self._start = 0.0
        self._count = 0
        self._suppressed = 0

    def allow(self) -> tuple[bool, int]:
        now = time.monotonic()
        if now - self._start >= self.window:
            self._start, self._count = now, 0
        self._count += 1
        if self._count > self.burst:
            self._suppressed += 1
            return False, 0
        suppressed, self._suppressed = self._suppressed, 0
        return True, suppressed


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate in ("*", etag, etag.strip('"')):
            return True
    return False


def create_app(
    store: Store,
    documents: RemoteDocuments,
    app_ids: Collection[str] = (),
    hosts: HostPolicy | None = None,
) -> Starlette:
    """The collector as an ASGI app over ``store``; the caller owns and closes the store.

    ``app_ids``: accepted ``X-Moesif-Application-Id`` values; empty accepts any non-empty id.
    ``hosts``: the ``Host`` headers the read API and the viewer answer (``_security``).
    """
    accepted = frozenset(app_ids)
    throttle = _Throttle()

    def check_app_id(request: Request) -> None:
        value = request.headers.get(APP_ID_HEADER, "").strip()
        if not value:
            raise ClientError(
                401, "missing X-Moesif-Application-Id header; set it to your application id"
            )
        if accepted and value not in accepted:
            shown = value[:6] + ("..." if len(value) > 6 else "")
            raise ClientError(
                401,
                f"X-Moesif-Application-Id {shown!r} is not accepted by this collector "
                "(it was started with --app-id)",
            )

    def ingest_endpoint(spec: Ingest) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            check_app_id(request)
            received, stored = await ingest(store, spec, request)
            return JSONResponse(
                {"received": received, "stored": stored},
                status_code=201,
                headers={CONFIG_ETAG_HEADER: documents.pair_etag()},
            )

        return endpoint

    def document_endpoint(document: WatchedJSON) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            check_app_id(request)
            content, etag = document.current()
            headers = {
                "ETag": etag,
                CONFIG_ETAG_HEADER: documents.pair_etag(),
                "Cache-Control": "no-cache",
            }
            if _etag_matches(request.headers.get("if-none-match"), etag):
                return Response(status_code=304, headers=headers)
            return Response(content, media_type="application/json", headers=headers)

        return endpoint

    async def index(request: Request) -> Response:
        return JSONResponse(
            {
                "service": "moesif-agent local collector",
                "viewer": "GET /",
                "collector_api": [
                    *(f"POST {spec.path}" for spec in INGEST_ENDPOINTS),
                    "GET /v1/config",
                    "GET /v1/rules",
                ],
                "read_api": READ_API,
            }
        )

    async def client_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ClientError)
        if exc.status != 404:
            allowed, suppressed = throttle.allow()
            if allowed:
                client = request.client
                logger.warning(
                    "collector rejected %s %s from %s (%s): %d %s%s",
                    request.method,
                    request.url.path,
                    f"{client.host}:{client.port}" if client else "?",
                    request.headers.get("user-agent", "no user-agent"),
                    exc.status,
                    exc.message,
                    f" ({suppressed} similar warnings suppressed)" if suppressed else "",
                )
        return JSONResponse(exc.to_json(), status_code=exc.status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = f"{exc.detail}: {request.method} {request.url.path}"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    async def store_busy(request: Request, exc: Exception) -> Response:
        logger.error("collector storage error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            {"error": f"storage unavailable, retry later ({exc})"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    routes: list[BaseRoute] = [*viewer_routes(), Route("/api", index, methods=["GET"])]
    for spec in INGEST_ENDPOINTS:
        routes.append(Route(spec.path, ingest_endpoint(spec), methods=["POST"]))
    routes.append(Route("/v1/config", document_endpoint(documents.config), methods=["GET"]))
    routes.append(Route("/v1/rules", document_endpoint(documents.rules), methods=["GET"]))
    routes.extend(read_routes(store))

    return Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeadersMiddleware),
            Middleware(LocalOnlyMiddleware, hosts=hosts or HostPolicy()),
        ],
        exception_handlers={
            ClientError: client_error,
            HTTPException: http_error,
            StoreError: store_busy,
            sqlite3.OperationalError: store_busy,
        },
    )
