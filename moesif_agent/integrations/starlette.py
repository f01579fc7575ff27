"""Starlette and FastAPI: the pure ASGI middleware, with Starlette request/response objects
for callbacks (as the reference moesifasgi agent passes them).

::

    from moesif_agent.integrations.starlette import MoesifStarletteMiddleware

    app.add_middleware(MoesifStarletteMiddleware, settings={"APPLICATION_ID": "..."})

``MoesifMiddleware`` is the same class, under the reference agent's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from starlette.requests import Request
    from starlette.responses import Response
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "moesif_agent.integrations.starlette needs Starlette: pip install 'moesif-agent[starlette]'"
    ) from exc

from .asgi import MoesifASGIMiddleware, _Cycle

if TYPE_CHECKING:
    from ._core import Flow

__all__ = ["MoesifASGIMiddleware", "MoesifMiddleware", "MoesifStarletteMiddleware"]


class MoesifStarletteMiddleware(MoesifASGIMiddleware):
    """The ASGI middleware for Starlette and FastAPI apps.

    Takes ``options`` (or ``settings=``, the reference agent's keyword) as an
    :class:`~moesif_agent.Options` or a mapping; callbacks receive ``(request, response)``:
    a Starlette ``Request`` and, once the app has answered, a ``Response`` carrying the
    status and headers (``None`` before the app runs). The route template
    (``/items/{item_id}``) is recorded as ``metadata.route``.
    """

    def callback_args(self, flow: Flow) -> tuple[Any, ...]:
        assert isinstance(flow, _Cycle)
        request = Request(flow.request)
        response = None
        if flow.started and flow.ex.status is not None:
            response = Response(status_code=flow.ex.status)
            response.raw_headers = list(flow.ex.response_headers)
        return request, response


MoesifMiddleware = MoesifStarletteMiddleware
