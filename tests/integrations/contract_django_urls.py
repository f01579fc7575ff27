"""The contract app (see stacks.py) as Django views: ROOT_URLCONF of the Django stacks."""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path

from tests.integrations.stacks import APP, HEALTH, fail, item


def _saw(request: Any) -> None:
    APP.saw(request.method, request.path, request.headers.items(), request.body)


def get_item(request: Any, item_id: str) -> JsonResponse:
    _saw(request)
    return JsonResponse(item(item_id))


def create(request: Any) -> HttpResponse:
    _saw(request)
    return HttpResponse(request.body, status=201, content_type="application/json")


def stream(request: Any) -> StreamingHttpResponse:
    _saw(request)
    # Under ASGI Django would consume a synchronous iterator whole (and warn); serve each
    # handler the kind of iterator it streams.
    chunks = APP.aproduce() if isinstance(request, ASGIRequest) else APP.produce()
    return StreamingHttpResponse(chunks, content_type="text/plain")


def health(request: Any) -> JsonResponse:
    _saw(request)
    return JsonResponse(HEALTH)


def error(request: Any) -> HttpResponse:
    _saw(request)
    fail()


urlpatterns = [
    path("items/<item_id>", get_item),
    path("items", create),
    path("stream", stream),
    path("health", health),
    path("error", error),
]
