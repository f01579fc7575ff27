"""``make bench``: every benchmark in one run; the tables also go to benchmarks/results/."""

from __future__ import annotations

import contextlib
import datetime
import io
import sys
from pathlib import Path

from . import asgi, collector, django, governance, load, masking, transport, wsgi
from ._util import machine

SUITES = {
    "In-process, Flask (WSGI)": wsgi.main,
    "In-process, FastAPI and Starlette (ASGI)": asgi.main,
    "In-process, Django": django.main,
    "Under real servers (wrk, 1 worker)": lambda: load.main([]),
    "Transport": transport.main,
    "Collector ingest": collector.main,
    "Governance and sampling evaluation": governance.main,
    "Masking": masking.main,
}


def main() -> int:
    only = sys.argv[1:]
    report = [f"# Benchmarks\n\n{datetime.date.today()}, {machine()}\n"]
    for title, run in SUITES.items():
        if only and not any(word.lower() in title.lower() for word in only):
            continue
        print(f"\n## {title}\n", flush=True)
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            run()
        print(captured.getvalue(), flush=True)
        report.append(f"## {title}\n\n{captured.getvalue()}")
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "latest.md").write_text("\n".join(report))
    print(f"\nwritten to {results / 'latest.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
