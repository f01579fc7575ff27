"""The README's "Try it locally in two minutes", run as a new user would: the package built as
a wheel and installed (not editable) into a fresh venv, then the section's commands, in order,
in one bash session; then `moesif-agent demo` from that install, first without its extra (one
line saying which to install) and then with it. Two things differ from the README: pip
installs the wheel just built instead of the release on PyPI, and the two ports are free ones
(8787 and 5000 may be taken on a shared machine). After each command the README puts in the
background, the script waits until that server answers, as a person would before typing on.

It takes 35-45 s here (a fresh venv; packages from PyPI, or pip's cache), under the ~60 s
that would make it a `slow` test, so `make test` runs it; tests/test_readme.py runs the same
quickstart in-process in a second.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from integrations.harness import ROOT, free_port
from tests.readme import block_starting, section, shell_lines, with_ports

READY = """
__ready() {  # wait until $1 answers (any HTTP status), at most 60 s
    for _ in $(seq 600); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
    echo "not ready: $1" >&2; return 1
}
"""


def _script(lines: list[str], wheel: Path, collector: int, app: int) -> str:
    out = ["set -e", READY]
    for line in lines:
        line = line.replace('"moesif-agent[', f'"{wheel}[')  # the wheel, not PyPI's release
        out.append(line)
        if line.endswith("&"):
            port = int(re.findall(r"--port (\d+)", line)[0])
            out.append(f"__ready http://127.0.0.1:{port}/")
    return with_ports("\n".join(out), collector, app) + "\n"


@pytest.mark.timeout(600)
def test_readme_quickstart_in_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(ROOT)],
        check=True,
    )
    (wheel,) = dist.glob("moesif_agent-*.whl")
    work = tmp_path / "work"
    work.mkdir()
    text = section("Try it locally in two minutes")
    (work / "app.py").write_text(block_starting(text, "python", "from flask import Flask"))
    collector, app = free_port(), free_port()
    (work / "quickstart.sh").write_text(_script(shell_lines(text), wheel, collector, app))

    # A user's shell: nothing from this checkout or its venv, no MOESIF_* settings.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MOESIF_", "PYTHON")) and k != "VIRTUAL_ENV"
    }
    log = (work / "quickstart.log").open("w")
    shell = subprocess.Popen(
        ["bash", "quickstart.sh"],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its background servers share this process group
    )
    try:
        assert shell.wait(timeout=600) == 0, (work / "quickstart.log").read_text()[-3000:]
        output = (work / "quickstart.log").read_text()
        assert f"ok: events go to http://127.0.0.1:{collector}" in output
        assert '{"hello":"world"}' in output.replace(" ", "")

        # (the readiness probes' 404s on / are events too)
        hello = f"http://127.0.0.1:{app}/hello/world"
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while not events and time.monotonic() < deadline:
            time.sleep(0.2)
            page = httpx.get(f"http://127.0.0.1:{collector}/api/events", timeout=10)
            events = [
                e for e in page.raise_for_status().json()["items"] if e["request"]["uri"] == hello
            ]
        (event,) = events
        assert event["response"]["status"] == 200

        _demo_from_the_install(work, wheel, env)
    finally:
        try:
            os.killpg(shell.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        log.close()


def _demo_from_the_install(work: Path, wheel: Path, env: dict[str, str]) -> None:
    bin_dir = work / "venv" / "bin"
    version = subprocess.run(
        [bin_dir / "moesif-agent", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("moesif-agent ")

    # [flask,collector] is not enough for the demo: one line says what to install.
    demo = [str(bin_dir / "moesif-agent"), "demo", "--json"]
    missing = subprocess.run(demo, cwd=work, env=env, capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    assert "pip install 'moesif-agent[demo]'" in missing.stderr

    subprocess.run([bin_dir / "pip", "install", "--quiet", f"{wheel}[demo]"], env=env, check=True)
    done = subprocess.run(demo, cwd=work, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["consistent"] is True
    assert summary["events_per_route"]["POST /items"] == 6
    assert not (work / "examples").exists()  # served from the wheel's copy
    assert shlex.split(summary["command"])[0].endswith("moesif-agent")
