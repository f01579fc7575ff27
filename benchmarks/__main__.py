"""``make bench``: every benchmark, each in its own process (so that no suite's settings or
threads leak into the next); the tables also go to benchmarks/results/latest.md."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

from ._util import machine

SUITES = {
    "In-process, Flask (WSGI)": "benchmarks.wsgi",
    "In-process, FastAPI and Starlette (ASGI)": "benchmarks.asgi",
    "In-process, Django": "benchmarks.django",
    "Under real servers (wrk, 1 worker)": "benchmarks.load",
    "Transport": "benchmarks.transport",
    "Collector ingest": "benchmarks.collector",
    "Governance and sampling evaluation": "benchmarks.governance",
    "Masking": "benchmarks.masking",
}


def main() -> int:
    only = sys.argv[1:]
    report = [f"# Benchmarks\n\n{datetime.date.today()}, {machine()}\n"]
    root = Path(__file__).resolve().parent.parent
    for title, module in SUITES.items():
        if only and not any(word.lower() in title.lower() for word in only):
            continue
        print(f"\n## {title}\n", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", module], cwd=root, capture_output=True, text=True
        )
        output = done.stdout if done.returncode == 0 else done.stdout + done.stderr
        print(output, flush=True)
        report.append(f"## {title}\n\n{output}")
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "latest.md").write_text("\n".join(report))
    print(f"\nwritten to {results / 'latest.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
