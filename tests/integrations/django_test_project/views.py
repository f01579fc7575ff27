"""Views for the Django tests; ``STATE`` lets a test observe and pace them."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.http import (
    FileResponse,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)


class State:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.produced: list[int] = []
        self.gate: asyncio.Event | None = None
        self.seen: dict[str, Any] = {}


STATE = State()


def item(request: Any, item_id: int) -> JsonResponse:
    STATE.calls += 1
    STATE.seen["txid"] = request.META.get("HTTP_X_MOESIF_TRANSACTION_ID")
    return JsonResponse({"id": item_id, "name": f"item {item_id}"})


async def aitem(request: Any, item_id: int) -> JsonResponse:
    STATE.calls += 1
    STATE.seen["txid"] = request.META.get("HTTP_X_MOESIF_TRANSACTION_ID")
    return JsonResponse({"id": item_id, "name": f"item {item_id}"})


def echo(request: Any) -> HttpResponse:
    return HttpResponse(request.body, status=201, content_type=request.content_type)


async def aecho(request: Any) -> HttpResponse:
    return HttpResponse(request.body, status=201, content_type=request.content_type)


def form(request: Any) -> JsonResponse:
    return JsonResponse(request.POST.dict())


def upload(request: Any) -> JsonResponse:
    sizes = {name: f.size for name, f in request.FILES.items()}
    return JsonResponse({"files": sizes, "fields": request.POST.dict()})


def chunks(request: Any) -> HttpResponse:
    """Reads the body piecewise, the way a streaming parser would."""
    parts = [request.read(3), request.readline()]
    parts += list(request)
    return HttpResponse(b"|".join(parts), content_type="text/plain")


def stream(request: Any) -> StreamingHttpResponse:
    def generate() -> Iterator[bytes]:
        for n in (1, 2, 3):
            STATE.produced.append(n)
            yield f"data: {n}\n\n".encode()

    return StreamingHttpResponse(generate(), content_type="text/event-stream")


async def astream(request: Any) -> StreamingHttpResponse:
    async def generate() -> AsyncIterator[bytes]:
        STATE.produced.append(1)
        yield b"data: 1\n\n"
        assert STATE.gate is not None
        await STATE.gate.wait()
        STATE.produced.append(2)
        yield b"data: 2\n\n"

    return StreamingHttpResponse(generate(), content_type="text/event-stream")


def file(request: Any) -> FileResponse:
    return FileResponse(io.BytesIO(b"file-bytes " * 100), content_type="application/octet-stream")


def error(request: Any) -> HttpResponse:
    raise RuntimeError("the view failed on purpose")


def cookies(request: Any) -> JsonResponse:
    response = JsonResponse({"ok": True})
    response.set_cookie("sessionid", "secret-session-value", httponly=True)
    response.set_cookie("theme", "dark")
    return response


def whoami(request: Any) -> JsonResponse:
    return JsonResponse({"user": request.user.username})


def legacy(request: Any, slug: str) -> JsonResponse:
    return JsonResponse({"slug": slug})


async def anoop(request: Any) -> JsonResponse:
    return JsonResponse(json.loads(b"{}"))
