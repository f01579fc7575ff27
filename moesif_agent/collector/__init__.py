"""The local collector: a Moesif Collector API server storing what it receives in SQLite.

Run it with ``moesif-agent collector`` (see ``--help``), or in-process for tests and demos::

    from moesif_agent.collector import LocalCollector

    with LocalCollector() as collector:
        ...  # point the agent at collector.url
        print(collector.stats())

Needs the ``[collector]`` extra (starlette, uvicorn).
"""

from __future__ import annotations

from ._server import LocalCollector

__all__ = ["LocalCollector"]
