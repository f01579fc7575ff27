"""The Starlette example app, instrumented by moesif-agent.

Configured by the environment: MOESIF_APPLICATION_ID and MOESIF_BASE_URI (for instance the
local collector, http://127.0.0.1:8787). EXAMPLE_INSTRUMENT=0 serves the bare app.

    uvicorn examples.starlette_app:app
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from moesif_agent.integrations.starlette import MoesifMiddleware


async def get_item(request: Request) -> Response:
    item_id = request.path_params["item_id"]
    return JSONResponse({"id": item_id, "name": f"item {item_id}"})


async def create_item(request: Request) -> Response:
    body = await request.body()
    return Response(body, status_code=201, media_type="application/json")


async def stream(request: Request) -> Response:
    chunks = int(request.query_params.get("chunks", 5))
    delay = float(request.query_params.get("delay", 0.05))

    async def generate() -> AsyncIterator[bytes]:
        for n in range(chunks):
            if n:
                await asyncio.sleep(delay)
            yield f"data: chunk {n}\n\n".encode()

    return StreamingResponse(generate(), media_type="text/event-stream")


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def error(request: Request) -> Response:
    raise RuntimeError("the example app failed on purpose")


def create_app(instrument: bool = True) -> Starlette:
    routes = [
        Route("/items/{item_id}", get_item),
        Route("/items", create_item, methods=["POST"]),
        Route("/stream", stream),
        Route("/health", health),
        Route("/error", error),
    ]
    middleware = [Middleware(MoesifMiddleware)] if instrument else []
    return Starlette(routes=routes, middleware=middleware)


app = create_app(instrument=os.environ.get("EXAMPLE_INSTRUMENT", "1") != "0")
