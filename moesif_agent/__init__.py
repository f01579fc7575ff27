"""moesif-agent: API monitoring for WSGI and ASGI apps, speaking the Moesif Collector API.

Framework middleware live in ``moesif_agent.integrations.<framework>``; this module holds the
framework-independent pieces::

    from moesif_agent import Agent, Options
"""

from __future__ import annotations

from ._agent import Agent
from ._client import Outcome
from ._options import Options
from ._version import __version__

__all__ = ["Agent", "Options", "Outcome", "__version__"]
