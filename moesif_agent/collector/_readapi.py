"""The read API (``/api``): lists and items of what was stored, the dashboard's summaries,
and clearing everything. The viewer reads only through it, so a script gets the same
answers as the page."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import _reads as reads
from . import _summary as summary
from ._errors import ClientError
from ._ingest import on_writer
from ._inputs import MAX_INT, parse_int
from ._query import EVENTS, RESOURCES, Filters, Resource, encode_cursor, parse_filters, parse_query
from ._store import Store
from ._timefmt import parse_iso

Endpoint = Callable[[Request], Any]


def _params(request: Request) -> dict[str, list[str]]:
    params = request.query_params
    return {name: params.getlist(name) for name in params}


def _event_filters(request: Request, *options: str) -> Filters:
    return parse_filters(EVENTS, _params(request), request.url.path, options)


def _interval(value: str | None) -> int | None:
    if value is None:
        return None
    seconds = parse_int(value.strip(), 1, summary.MAX_INTERVAL)
    if seconds is None:
        raise ClientError(
            400,
            f"bad filter interval: {value[:32]!r} is not a number of seconds (60), at most "
            f"{summary.MAX_INTERVAL} (a year); leave it out to fit the range",
            field="interval",
        )
    return seconds


def read_routes(store: Store) -> list[BaseRoute]:
    """The ``/api`` routes over ``store``."""

    def list_endpoint(resource: Resource) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            query = parse_query(resource, _params(request))
            page = await run_in_threadpool(
                store.read,
                reads.page,
                resource.name,
                resource.order,
                query.where,
                query.params,
                query.after,
                query.limit,
                resource.fields,
            )
            cursor = None if page.next_key is None else encode_cursor(resource, page.next_key)
            body = '{"items":[' + ",".join(page.items) + '],"next_cursor":' + json.dumps(cursor)
            return Response(body + "}", media_type="application/json")

        return endpoint

    def item_endpoint(resource: Resource) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            key: str | int | None = request.path_params["key"]
            if resource.key_is_int:  # ids count from 1: no other key can name one
                key = parse_int(request.path_params["key"], 1, MAX_INT)
            found = None
            if key is not None:
                found = await run_in_threadpool(
                    store.read, reads.get, resource.name, resource.key, key, resource.fields
                )
            if found is None:
                shown = request.path_params["key"] if key is None else key
                raise ClientError(404, f"no {resource.singular} with {resource.key} {shown!r}")
            return Response(found, media_type="application/json")

        return endpoint

    async def stats(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(store.read, reads.stats))

    async def endpoints(request: Request) -> Response:
        filters = _event_filters(request)
        return JSONResponse(
            await run_in_threadpool(store.read, summary.endpoints, filters.where, filters.params)
        )

    async def timeseries(request: Request) -> Response:
        filters = _event_filters(request, "interval")
        interval = _interval(filters.options.get("interval"))
        # Already validated as filters; the range is also the chart's x axis.
        since = request.query_params.get("time__gt")
        until = request.query_params.get("time__lt")
        start = None if since is None else parse_iso(since.strip())
        end = None if until is None else parse_iso(until.strip())
        result = await run_in_threadpool(
            store.read, summary.timeseries, filters.where, filters.params, start, end, interval
        )
        return JSONResponse(result)

    def people_endpoint(kind: str) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            filters = _event_filters(request)
            result = await run_in_threadpool(
                store.read, summary.people, kind, filters.where, filters.params
            )
            return JSONResponse(result)

        return endpoint

    async def clear(request: Request) -> Response:
        deleted = await on_writer(store, store.clear)
        return JSONResponse({"deleted": deleted})

    routes: list[BaseRoute] = [
        Route("/api/stats", stats, methods=["GET"]),
        Route("/api/endpoints", endpoints, methods=["GET"]),
        Route("/api/timeseries", timeseries, methods=["GET"]),
        Route("/api/data", clear, methods=["DELETE"]),
    ]
    for kind in summary.PEOPLE:
        routes.append(Route(f"/api/people/{kind}", people_endpoint(kind), methods=["GET"]))
    for name, resource in RESOURCES.items():
        routes.append(Route(f"/api/{name}", list_endpoint(resource), methods=["GET"]))
        routes.append(Route(f"/api/{name}/{{key:path}}", item_endpoint(resource), methods=["GET"]))
    return routes


READ_API = [
    "GET /api",
    "GET /api/stats",
    "GET /api/endpoints",
    "GET /api/timeseries",
    *(f"GET /api/people/{kind}" for kind in summary.PEOPLE),
    *(f"GET /api/{name}" for name in RESOURCES),
    *(f"GET /api/{name}/{{{r.key}}}" for name, r in RESOURCES.items()),
    "DELETE /api/data",
]
