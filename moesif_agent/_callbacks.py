"""User callbacks, wrapped once at startup: isolated, arity-tolerant, results checked.

A callback that raises is logged once and treated as having returned nothing; the request
goes on. Callbacks may accept fewer positional arguments than an adapter offers (a reference
agent's ``identify_user(app, environ)`` works where ``(app, environ, response_headers)`` is
offered), and in ASGI apps they may be ``async``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ._guard import callback_failed, log_once

Callback = Callable[..., Any]


def _arity(fn: Callback) -> int | None:
    """How many positional arguments ``fn`` takes; None when it takes any number."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    count = 0
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            return None
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def _check(name: str, value: Any) -> Any:
    """Normalise what a callback returned; a wrong type is reported once and ignored."""
    if value is None:
        return None
    kind = name.removesuffix("_outgoing")
    if kind == "skip":
        return bool(value)
    if kind == "get_metadata":
        if isinstance(value, dict):
            return value
        log_once(
            f"callback-type:{name}",
            logging.ERROR,
            "moesif-agent: %s returned %s; it must return a dict (ignored; logged once)",
            name,
            type(value).__name__,
        )
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value) or None
    log_once(
        f"callback-type:{name}",
        logging.ERROR,
        "moesif-agent: %s returned %s; it must return a string (ignored; logged once)",
        name,
        type(value).__name__,
    )
    return None


def wrap(name: str, fn: Callback | None) -> Callable[..., Any] | None:
    """A synchronous callback that never raises and returns a checked value (or None)."""
    if fn is None:
        return None
    arity = _arity(fn)
    if inspect.iscoroutinefunction(fn):  # said at startup, not at the first request
        _async_on_sync(name)

    def call(*args: Any) -> Any:
        try:
            result = fn(*args) if arity is None else fn(*args[:arity])
        except Exception as exc:
            callback_failed(name, exc)
            return None
        if inspect.isawaitable(result):
            _close(result)
            _async_on_sync(name)
            return None
        return _check(name, result)

    return call


def _async_on_sync(name: str) -> None:
    log_once(
        f"callback-async:{name}",
        logging.ERROR,
        "moesif-agent: %s is async, which only ASGI apps support: make it a plain function "
        "for this app (ignored; logged once)",
        name,
    )


def wrap_async(name: str, fn: Callback | None) -> Callable[..., Awaitable[Any]] | None:
    """A callback for ASGI apps: sync ones are called directly, async ones awaited."""
    if fn is None:
        return None
    arity = _arity(fn)

    async def call(*args: Any) -> Any:
        try:
            result = fn(*args) if arity is None else fn(*args[:arity])
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            callback_failed(name, exc)
            return None
        return _check(name, result)

    return call


def _close(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # avoid "coroutine was never awaited" warnings
