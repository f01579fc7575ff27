"""The test's side of the fault collector: start it on fixed ports, switch its mode, restart
it, and read what it accepted (its journal) by transaction id."""

from __future__ import annotations

import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from integrations.harness import ROOT, wait_until


def fixed_port() -> int:
    """A free loopback port *below* the ephemeral range: while the collector is ``down`` its
    port stays closed, and an outgoing connection of any process could otherwise be given it
    as a local port and stop us from re-binding it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(20_000, min(low, 32_768))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


@dataclass
class Copy:
    """One accepted copy of an event: which collector process took it, in which mode."""

    instance: int
    mode: str


@dataclass
class Journal:
    """The collector's journal, read incrementally (it only ever grows)."""

    path: Path
    copies: dict[str, list[Copy]] = field(default_factory=dict)
    _offset: int = 0

    def refresh(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as file:
            file.seek(self._offset)
            data = file.read()
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        for line in data[:end].splitlines():
            batch = json.loads(line)
            copy = Copy(batch["instance"], batch["mode"])
            for txid in batch["ids"]:
                self.copies.setdefault(txid, []).append(copy)
        self._offset += end

    def missing(self, ids: Iterable[str]) -> list[str]:
        self.refresh()
        return [txid for txid in ids if txid not in self.copies]

    def counts(self, ids: Iterable[str]) -> Counter[str]:
        self.refresh()
        return Counter({txid: len(self.copies.get(txid, ())) for txid in ids})


class FaultCollector:
    """``integrations.faults.server`` in a subprocess on two fixed loopback ports."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="moesif-faults-"))
        self.port = fixed_port()
        self.admin_port = fixed_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = httpx.Client(base_url=f"http://127.0.0.1:{self.admin_port}", timeout=10)
        self.journal = Journal(self.workdir / "journal.jsonl")
        self.killed: set[int] = set()  # pids of instances killed mid-run
        self.proc: subprocess.Popen[bytes] | None = None
        self.standby: subprocess.Popen[bytes] | None = None
        self.start()

    def _spawn(self, bind_timeout: float) -> subprocess.Popen[bytes]:
        command = [
            sys.executable, "-m", "integrations.faults.server", "--port", str(self.port),
            "--admin-port", str(self.admin_port), "--journal", str(self.journal.path),
            "--bind-timeout", str(bind_timeout),
        ]  # fmt: skip
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.readline()  # "binding": started and imported (or b"" if it died)
        return proc

    def start(self) -> None:
        self.proc = self._spawn(bind_timeout=5)
        wait_until(self._answers, 15, "fault collector", self.proc)

    def prepare_restart(self) -> None:
        """Start the next instance now, waiting for the port: starting Python costs ~0.1 s
        of CPU, which on two cores would slow the app under test during the restart and be
        blamed on the agent. The restart itself is then a kill and a re-bind (< 0.1 s)."""
        self.standby = self._spawn(bind_timeout=120)

    def restart(self) -> None:
        """Kill (no goodbye: SIGKILL) and start again on the same ports, in healthy mode."""
        assert self.proc is not None
        self.killed.add(self.proc.pid)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.standby is None:
            self.start()
            return
        self.proc, self.standby = self.standby, None
        wait_until(self._answers, 15, "fault collector (standby)", self.proc)

    def _answers(self) -> bool:
        """The admin port answers, and it is this instance (not the one just killed)."""
        assert self.proc is not None
        try:
            instance: int = self.state()["instance"]
        except httpx.TransportError:
            return False
        return instance == self.proc.pid

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin.get("/state").raise_for_status().json()
        return result

    def set_mode(self, mode: str) -> None:
        self.admin.post(f"/mode/{mode}").raise_for_status()

    def wait_delivered(self, ids: list[str], timeout: float) -> float:
        """Poll until every id was accepted and nothing is in flight (a slow request still
        sleeping would add a copy later); returns the seconds it took."""
        started = time.monotonic()

        def settled() -> bool:
            return not self.journal.missing(ids) and self.state()["inflight"] == 0

        try:
            assert self.proc is not None
            wait_until(settled, timeout, "delivery to the fault collector", self.proc)
        except TimeoutError:
            missing = self.journal.missing(ids)
            raise AssertionError(
                f"{len(missing)} of {len(ids)} events not delivered within {timeout} s; "
                f"collector state {self.state()}"
            ) from None
        return time.monotonic() - started

    def duplicates(self, ids: Iterable[str], legitimate: Callable[[Copy], bool]) -> tuple[int, int]:
        """(raw duplicate copies, of which unexplained): an extra copy is explained when a
        copy of the same event went unacknowledged (``legitimate``), so the agent re-sent it."""
        raw = unexplained = 0
        self.journal.refresh()
        for txid in ids:
            copies = self.journal.copies.get(txid, [])
            extra = len(copies) - 1
            if extra > 0:
                raw += extra
                unexplained += max(0, extra - sum(1 for c in copies if legitimate(c)))
        return raw, unexplained

    def stop(self) -> None:
        self.admin.close()
        for proc in (self.proc, self.standby):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
