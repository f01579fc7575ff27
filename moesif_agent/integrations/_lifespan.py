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
    """Wrap an ASGI app that refuses the lifespan protocol (Django's ASGI handler raises on
    it) so that the server's lifespan shutdown still delivers the agents' queued events.

    uvicorn ends a SIGTERM shutdown by re-raising the signal, which kills the process before
    ``atexit`` hooks (the agent's usual exit flush) can run; the lifespan shutdown is the
    last moment to deliver. Under uvicorn wrap Django's application::

        application = FlushOnShutdown(get_asgi_application())

    This wrapper deliberately answers lifespan for an app that refuses it before receiving
    anything (the server then sees an app that supports lifespan); an app that takes part in
    lifespan is passed through as ``MoesifASGIMiddleware`` does.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        took_part = await lifespan(self.app, scope, receive, send, answer_refusal=True)
        if took_part:
            return
        while True:  # answering for the app: the server still tells us when it shuts down
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _to_thread(flush_all)
                await send({"type": "lifespan.shutdown.complete"})
                return


async def lifespan(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, *, answer_refusal: bool = False
) -> bool:
    """Pass lifespan to the app unchanged: the server sees exactly what the app says, raises
    and returns. When the app takes part in shutdown, every agent is flushed before the
    server hears that shutdown is complete (or before the app's call ends). With
    ``answer_refusal``, an app that raises before receiving anything returns False instead
    of raising (the caller answers for it); otherwise returns True."""
    received = False
    shutting_down = False
    flushed = False

    async def flush() -> None:
        nonlocal flushed
        if shutting_down and not flushed:
            flushed = True
            await _to_thread(flush_all)

    async def lifespan_receive() -> Message:
        nonlocal received, shutting_down
        message = await receive()
        received = True
        if message["type"] == "lifespan.shutdown":
            shutting_down = True
        return message

    async def lifespan_send(message: Message) -> None:
        if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            await flush()
        await send(message)

    try:
        await app(scope, lifespan_receive, lifespan_send)
    except Exception:
        if answer_refusal and not received:
            return False
        await flush()
        raise
    await flush()
    return True


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
