"""A gunicorn config file (``-c integrations/faults/gunicorn_exit_report.py``) for the prefork
test: every gunicorn process, master and workers, writes at exit which threads are still
alive and what its agent did, to ``$FAULTS_EXIT_REPORTS/<pid>.json``.

gunicorn executes this file before it loads (or preloads) the app, so the ``atexit`` hook
below is registered before the agent's own and therefore runs *after* it (atexit runs hooks
in reverse order): it sees the process as the agent leaves it.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any


def _report() -> None:
    directory = os.environ.get("FAULTS_EXIT_REPORTS")
    if not directory:
        return
    report: dict[str, Any] = {
        "pid": os.getpid(),
        "threads": [t.name for t in threading.enumerate() if t is not threading.main_thread()],
        "agents": [],
    }
    lifecycle = sys.modules.get("moesif_agent._lifecycle")
    for transport in list(getattr(lifecycle, "_transports", ())):
        thread = transport._thread
        report["agents"].append(
            {
                # the worker thread was started in this process (after the fork)
                "started_here": thread is not None and transport._pid == os.getpid(),
                "thread_alive": thread is not None and thread.is_alive(),
                "stats": transport.stats(),
            }
        )
    Path(directory, f"{os.getpid()}.json").write_text(json.dumps(report))


atexit.register(_report)
