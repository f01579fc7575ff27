"""The contract routes: items, echo, a stream, a health check and a failing view."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET, require_POST


@require_GET
def get_item(request: HttpRequest, item_id: str) -> JsonResponse:
    return JsonResponse({"id": item_id, "name": f"item {item_id}"})


@require_POST
def create_item(request: HttpRequest) -> JsonResponse:
    try:
        payload = json.loads(request.body)
    except ValueError:
        payload = None
    return JsonResponse(payload, status=201, safe=False)


@require_GET
def stream(request: HttpRequest) -> StreamingHttpResponse:
    chunks = int(request.GET.get("chunks", 5))
    delay = float(request.GET.get("delay", 0.05))

    def generate() -> Iterator[bytes]:
        for n in range(chunks):
            if n:
                time.sleep(delay)
            yield f"data: chunk {n}\n\n".encode()

    async def agenerate() -> AsyncIterator[bytes]:
        for n in range(chunks):
            if n:
                await asyncio.sleep(delay)
            yield f"data: chunk {n}\n\n".encode()

    # Django streams a sync iterator under WSGI and an async one under ASGI (given the other
    # kind, it buffers the whole response first).
    under_wsgi = "wsgi.input" in request.META
    content: Any = generate() if under_wsgi else agenerate()
    return StreamingHttpResponse(content, content_type="text/event-stream")


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def error(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the example project failed on purpose")
