"""The FastAPI example app, instrumented by moesif-agent.

Configured by the environment: MOESIF_APPLICATION_ID and MOESIF_BASE_URI (for instance the
local collector, http://127.0.0.1:8787). EXAMPLE_INSTRUMENT=0 serves the bare app.

    uvicorn examples.fastapi_app:app
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Body, FastAPI
from fastapi.responses import StreamingResponse

from moesif_agent.integrations.starlette import MoesifMiddleware


def create_app(instrument: bool = True) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def get_item(item_id: str) -> dict[str, Any]:
        return {"id": item_id, "name": f"item {item_id}"}

    @app.post("/items", status_code=201)
    async def create_item(payload: Any = Body(None)) -> Any:  # noqa: B008
        return payload

    @app.get("/stream")
    async def stream(chunks: int = 5, delay: float = 0.05) -> StreamingResponse:
        async def generate() -> AsyncIterator[bytes]:
            for n in range(chunks):
                if n:
                    await asyncio.sleep(delay)
                yield f"data: chunk {n}\n\n".encode()

        return StreamingResponse(generate(), media_type="text/event-stream")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/error")
    async def error() -> None:
        raise RuntimeError("the example app failed on purpose")

    if instrument:
        app.add_middleware(MoesifMiddleware)
    return app


app = create_app(instrument=os.environ.get("EXAMPLE_INSTRUMENT", "1") != "0")
