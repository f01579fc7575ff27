"""ASGI lifespan: the server's shutdown is the last moment to deliver queued events.

uvicorn ends a SIGTERM shutdown by re-raising the signal, which kills the process before
``atexit`` hooks (the agent's usual exit flush) can run, so the ASGI middleware (and
``FlushOnShutdown`` for apps it does not wrap) flush every agent when the server says
``lifespan.shutdown``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .._agent import all_agents

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class FlushOnShutdown:
    """Wrap an ASGI app so that the server's lifespan shutdown delivers the agents' queued
    events, even when the app itself does not speak the lifespan protocol.

    uvicorn ends a SIGTERM shutdown by re-raising the signal, which kills the process before
    ``atexit`` hooks (the agent's usual exit flush) can run; the lifespan shutdown is the
    last moment to deliver. Django's ASGI handler refuses lifespan, so under uvicorn wrap it::

        application = FlushOnShutdown(get_asgi_application())

    (``MoesifASGIMiddleware`` and the Starlette middleware do this by themselves.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(self.app, scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def lifespan(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Pass lifespan to the app, flushing every agent before shutdown completes. An app that
    refuses lifespan outright (raises before saying anything) is answered for."""
    spoke = False

    async def lifespan_send(message: Message) -> None:
        nonlocal spoke
        spoke = True
        if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            await _to_thread(flush_all)
        await send(message)

    try:
        await app(scope, receive, lifespan_send)
        return
    except Exception:
        if spoke:  # a real startup or shutdown failure of the app: not ours to hide
            raise
    # The app does not do lifespan (Django's handler raises at once): keep the protocol
    # going so that the server still tells us when it shuts down.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await _to_thread(flush_all)
            await send({"type": "lifespan.shutdown.complete"})
            return


def flush_all() -> None:
    """Deliver what every agent in this process has queued, each within its shutdown_timeout."""
    for agent in all_agents():
        agent.flush(agent.options.shutdown_timeout)


async def _to_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking call off the event loop (asyncio; elsewhere, inline)."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return function(*args)
    return await loop.run_in_executor(None, function, *args)
