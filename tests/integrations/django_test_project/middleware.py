"""Stands in for django.contrib.auth's AuthenticationMiddleware without a database.

``X-Test-User: alice`` makes ``request.user`` a lazy authenticated user and ``request.auser``
its async loader, as the real middleware does; ``LOADS`` lists which of the two was used.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.utils.deprecation import MiddlewareMixin
from django.utils.functional import SimpleLazyObject

LOADS: list[str] = []


class FakeUser:
    is_authenticated = True

    def __init__(self, username: str) -> None:
        self.username = username
        self.pk = 42

    def get_username(self) -> str:
        return self.username


class AnonymousUser:
    is_authenticated = False
    username = ""


class FakeAuthMiddleware(MiddlewareMixin):
    def process_request(self, request: Any) -> None:
        name = request.META.get("HTTP_X_TEST_USER")

        def load() -> Any:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                raise AssertionError("the lazy request.user was evaluated on the event loop")
            LOADS.append("user")
            return FakeUser(name) if name else AnonymousUser()

        async def auser() -> Any:
            LOADS.append("auser")
            return FakeUser(name) if name else AnonymousUser()

        request.user = SimpleLazyObject(load)
        request.auser = auser
