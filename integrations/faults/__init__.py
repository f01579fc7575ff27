"""Fault injection: the example apps under their real servers while the collector goes down,
turns slow, answers 500/429, serves malformed config/rules, or is restarted mid-run.

    .venv/bin/pytest integrations/faults -m "not slow"      # ~2.5 minutes
    .venv/bin/pytest integrations/faults/test_long_run.py   # 100,000 requests, ~5 minutes

``server.py`` is the programmable collector (its own process), ``control.py`` drives it from
the test, ``load.py`` sends the traffic and times every request, ``procfs.py`` reads memory,
file descriptors and child processes from /proc, ``apps.py`` names the servers. What was
measured is printed as markdown tables at the end of the session (``report.py``), and written
as JSON to ``$MOESIF_FAULTS_RESULTS`` if set.
"""
