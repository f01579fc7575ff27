"""Flask: the WSGI middleware, plus an extension that also records Flask's route template.

::

    from moesif_agent.integrations.flask import Moesif

    app = Flask(__name__)
    Moesif(app, {"APPLICATION_ID": "..."})      # or: moesif = Moesif(); moesif.init_app(app)

``app.wsgi_app = MoesifWSGIMiddleware(app.wsgi_app, ...)`` works too (without route templates).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

try:
    from flask import got_request_exception, request
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "moesif_agent.integrations.flask needs Flask: pip install 'moesif-agent[flask]'"
    ) from exc

from .._agent import Agent
from .._options import Options
from ._core import describe
from ._reference import ReferenceMethods
from .wsgi import ENVIRON_KEY, MoesifMiddleware, MoesifWSGIMiddleware

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["Moesif", "MoesifMiddleware", "MoesifWSGIMiddleware"]


class Moesif(ReferenceMethods):
    """Flask extension: wraps ``app.wsgi_app``, notes each request's URL rule
    (``/items/<int:item_id>``) as ``metadata.route`` and the exception behind a 500 (Flask
    turns it into a response before the WSGI middleware could see it)."""

    def __init__(
        self,
        app: Flask | None = None,
        options: Options | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        self._options = options
        self._overrides = overrides
        self.middleware: MoesifWSGIMiddleware | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        middleware = MoesifWSGIMiddleware(app.wsgi_app, self._options, **self._overrides)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions["moesif"] = middleware
        app.before_request(_note_route)
        got_request_exception.connect(_note_exception, app, weak=False)
        self.middleware = middleware

    @property
    def agent(self) -> Agent:
        if self.middleware is None:
            raise RuntimeError("Moesif(app) or moesif.init_app(app) must be called first")
        return self.middleware.agent


def _note_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
    exchange = request.environ.get(ENVIRON_KEY)
    if exchange is not None:
        exchange.error = describe(exception)


def _note_route() -> None:
    current = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    exchange = current.environ.get(ENVIRON_KEY)
    rule = current.url_rule
    if exchange is not None and rule is not None:
        exchange.route = rule.rule
