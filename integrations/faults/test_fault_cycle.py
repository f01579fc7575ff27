"""Each example app under its real server, one worker, while the collector cycles through
faults: down, slow (timeouts), 500, 429, malformed config/rules, and a restart mid-run.

One server per app for the whole cycle (starting servers is what would make this slow):

    warm-up -> healthy -> down -> healthy -> slow -> healthy -> 500 -> healthy -> 429
            -> healthy -> malformed -> healthy -> restarted -> healthy

Every phase drives the same load (LOAD requests, CONCURRENCY client threads). A fault phase
starts with the fault, runs the load, ends the fault, then polls the collector until every
event of the phase arrived. Checked: every response is the example contract's; every event
arrives after recovery, with no duplicate copy that the fault does not explain; the agent
really met the fault (the collector counted its requests in that mode); and the fault
phase's p99 stays within RELATIVE (+ ABSOLUTE_MS) of the healthy phase just before it (the
neighbouring phase, not the first one: this VM's speed drifts while other suites run).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

pytest.importorskip("gunicorn")
pytest.importorskip("uvicorn")
pytest.importorskip("flask")
pytest.importorskip("fastapi")
pytest.importorskip("django")

from integrations.faults import report
from integrations.faults.apps import APPS, stop_timed
from integrations.faults.control import Copy, FaultCollector
from integrations.faults.load import Load, LoadResult
from integrations.harness import AppServer

LOAD = 1000  # requests per phase: p99 is the 10th slowest
CONCURRENCY = 3
# The latency bound: fault p99 <= healthy p99 * (1 + RELATIVE) + ABSOLUTE_MS. Measured on
# this shared 2-core VM, two consecutive identical healthy phases differ at p99 by up to
# 2.5-3 ms (ratios 0.79-1.20, p99 9-16 ms) when it is quiet, and by far more while another
# suite runs: 10% alone fails on noise. So: 2 ms of absolute slack, and a comparison that
# fails is repeated with a fresh healthy/fault pair, up to ATTEMPTS times (every attempt is
# in the report). A fault that really slows requests fails every attempt.
RELATIVE = 0.10
ABSOLUTE_MS = 2.0
ATTEMPTS = 3
EVIDENCE_TIMEOUT = 15.0

# The agent, tuned so that each phase is short and nothing is dropped:
ENV = {
    "MOESIF_BATCH_MAX_TIME": "0.2",
    # Shorter than the slow collector's 5 s: a slow collector means timeouts and re-sends.
    "MOESIF_REQUEST_TIMEOUT": "1",
    "MOESIF_CONNECT_TIMEOUT": "1",
    # Far longer than any fault here: a batch is retried through the fault, never dropped.
    "MOESIF_MAX_RETRY_TIME": "60",
    # Refresh config/rules every second, so a short malformed phase serves several documents.
    "MOESIF_CONFIG_REFRESH_INTERVAL": "1",
}


@dataclass
class Phase:
    load: LoadResult
    accepted_during: int  # events of the phase the collector had accepted when the fault ended
    delivered: int
    duplicates: int  # raw: extra copies the collector accepted
    unexplained: int  # extra copies the fault does not explain
    recovery: float  # seconds from the end of the fault to the last event accepted
    unmet: list[str]  # the fault's evidence that never showed


def nothing_accepted_during_the_fault(collector: FaultCollector, phase: Phase) -> None:
    assert phase.accepted_during == 0, "the fault did not stop delivery"


def slow_copies_were_resent(collector: FaultCollector, phase: Phase) -> None:
    # The agent timed out (1 s) before the slow collector answered (5 s), so it re-sent every
    # batch that the slow collector stored: each such event is there twice or more.
    for txid in phase.load.ids:
        copies = collector.journal.copies[txid]
        if any(copy.mode == "slow" for copy in copies):
            assert len(copies) >= 2, f"{txid}: stored slowly, never re-sent: {copies}"


def both_instances_accepted_events(collector: FaultCollector, phase: Phase) -> None:
    instances = {c.instance for txid in phase.load.ids for c in collector.journal.copies[txid]}
    assert instances & collector.killed, "the killed collector accepted none of the phase"
    assert instances - collector.killed, "the restarted collector accepted none of the phase"


@dataclass(frozen=True)
class Fault:
    name: str
    mode: str | None  # the collector's mode during the phase (None: stays healthy)
    # The agent met the fault: the collector answered so many requests in the fault's mode
    # ("<what>:<mode>" counters). The fault lasts until it did, or EVIDENCE_TIMEOUT.
    evidence: tuple[tuple[str, int], ...] = ()
    before: Callable[[FaultCollector], None] | None = None  # before the load starts
    mid_run: Callable[[FaultCollector], None] | None = None  # a third into the load
    # An extra copy of an event is explained when another copy went unacknowledged:
    resent: Callable[[FaultCollector, Copy], bool] = lambda collector, copy: False
    check: Callable[[FaultCollector, Phase], None] | None = None


FAULTS = [
    Fault("down", "down", check=nothing_accepted_during_the_fault),
    # Read timeouts (1 s < 5 s): the slow collector still stores each timed-out copy.
    Fault(
        "slow",
        "slow",
        (("events:slow", 1),),
        resent=lambda c, copy: copy.mode == "slow",
        check=slow_copies_were_resent,
    ),
    Fault(
        "error500",
        "error500",
        (("events:error500", 1),),
        check=nothing_accepted_during_the_fault,
    ),
    Fault(
        "throttle429",
        "throttle429",
        (("events:throttle429", 1),),
        check=nothing_accepted_during_the_fault,
    ),
    # Events are accepted; the agent must keep its policy and lose nothing. Each of the three
    # bad documents of each kind is served once (server.MALFORMED_*).
    Fault("malformed", "malformed", (("config:malformed", 3), ("rules:malformed", 3))),
    # Killed without warning mid-run; it may have stored a batch it never acknowledged.
    Fault(
        "restart",
        None,
        before=FaultCollector.prepare_restart,
        mid_run=FaultCollector.restart,
        resent=lambda c, copy: copy.instance in c.killed,
        check=both_instances_accepted_events,
    ),
]


def run_phase(server: AppServer, collector: FaultCollector, fault: Fault | None) -> Phase:
    served = collector.state()["served"]
    if fault is not None and fault.before is not None:
        fault.before(collector)
    if fault is not None and fault.mode is not None:
        collector.set_mode(fault.mode)
    load = Load(server.url, LOAD, concurrency=CONCURRENCY).start()
    if fault is not None and fault.mid_run is not None:
        load.wait_completed(LOAD // 3)
        fault.mid_run(collector)
    result = load.join()
    unmet = hold_until_met(collector, fault.evidence if fault else (), served)
    accepted_during = len(result.ids) - len(collector.journal.missing(result.ids))
    collector.set_mode("healthy")
    recovery = collector.wait_delivered(result.ids, timeout=45)
    counts = collector.journal.counts(result.ids)
    raw, unexplained = collector.duplicates(
        result.ids, lambda copy: fault is not None and fault.resent(collector, copy)
    )
    delivered = sum(1 for n in counts.values() if n)
    return Phase(result, accepted_during, delivered, raw, unexplained, recovery, unmet)


def hold_until_met(
    collector: FaultCollector, evidence: tuple[tuple[str, int], ...], before: dict[str, int]
) -> list[str]:
    """Poll until the collector answered enough requests in the fault's mode; the unmet."""

    def unmet() -> list[str]:
        served = collector.state()["served"]
        return [key for key, n in evidence if served.get(key, 0) - before.get(key, 0) < n]

    deadline = time.monotonic() + EVIDENCE_TIMEOUT
    while unmet() and time.monotonic() < deadline:
        time.sleep(0.05)
    return unmet()


def within_bound(fault_p99: float, reference_p99: float) -> bool:
    return fault_p99 <= reference_p99 * (1 + RELATIVE) + ABSOLUTE_MS


def record(app: str, name: str, phase: Phase, reference: Phase | None, attempt: int) -> None:
    report.add(
        f"fault cycle (1 worker, {LOAD} requests per phase, {CONCURRENCY} client threads)",
        app=app,
        phase=name,
        attempt=attempt,
        p50_ms=phase.load.p50,
        p99_ms=phase.load.p99,
        healthy_p99_ms=reference.load.p99 if reference else "",
        bound_ms=reference.load.p99 * (1 + RELATIVE) + ABSOLUTE_MS if reference else "",
        failed=len(phase.load.failures),
        accepted_during_fault=phase.accepted_during if reference else "",
        delivered=f"{phase.delivered}/{len(phase.load.ids)}",
        duplicates=phase.duplicates,
        unexplained_duplicates=phase.unexplained,
        recovery_s=phase.recovery,
    )


def check(collector: FaultCollector, fault: Fault | None, phase: Phase) -> None:
    name = fault.name if fault else "healthy"
    assert not phase.load.failures, f"{name}: {phase.load.failures[:5]}"
    assert phase.delivered == len(phase.load.ids), f"{name}: events missing"
    assert phase.unexplained == 0, f"{name}: {phase.unexplained} unexplained duplicate copies"
    assert not phase.unmet, f"{name}: the agent never met the fault (no {phase.unmet})"
    if fault is None:
        assert phase.duplicates == 0
    elif fault.check is not None:
        fault.check(collector, phase)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("app", list(APPS))
def test_fault_cycle(faults: FaultCollector, app: str) -> None:
    server = AppServer(APPS[app], faults.url, env=ENV)
    try:
        # Warm-up: imports, caches, the agent's first config fetch. Not measured.
        faults.wait_delivered(Load(server.url, LOAD).start().join().ids, timeout=30)
        for fault in FAULTS:
            attempts: list[tuple[float, float]] = []
            for attempt in range(1, ATTEMPTS + 1):
                healthy = run_phase(server, faults, None)
                record(app, "healthy", healthy, None, attempt)
                check(faults, None, healthy)
                phase = run_phase(server, faults, fault)
                record(app, fault.name, phase, healthy, attempt)
                check(faults, fault, phase)
                attempts.append((phase.load.p99, healthy.load.p99))
                if within_bound(phase.load.p99, healthy.load.p99):
                    break
            assert within_bound(*attempts[-1]), (
                f"{fault.name}: p99 {attempts} (fault, healthy) ms in {ATTEMPTS} attempts"
            )
        final = run_phase(server, faults, None)
        record(app, "healthy (after all faults)", final, None, 1)
        check(faults, None, final)
    finally:
        seconds, code = stop_timed(server)
    report.add(
        "SIGTERM with a healthy collector, nothing queued (the server's own overhead)",
        app=app,
        exit_s=seconds,
        exit_code=code,
    )
    # uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is a clean exit too
    assert code in (0, -signal.SIGTERM)
