"""The on-disk spool: what the collector cannot take is kept on disk, bounded, and sent again
once it answers, by this process or the next one, once, whatever moment a writer died at."""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from moesif_agent import Agent
from moesif_agent._spool import Spool
from moesif_agent._spooldir import spool_key
from tests.recorder import Answer, Recorder
from tests.test_transport import wire_event

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the spool needs flock")

DOWN = Answer(status=503, body=b'{"error": "down for maintenance"}')


@pytest.fixture
def spool_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's spool root, also for the subprocesses it starts (MOESIF_SPOOL_DIR)."""
    root = tmp_path / "spool"
    monkeypatch.setenv("MOESIF_SPOOL_DIR", str(root))
    return root


def spool_dir(root: Path, recorder: Recorder, app: str = "test-app") -> Path:
    return root / spool_key(app, recorder.url)


def spooled_ids(directory: Path) -> list[str]:
    """The transaction ids in the spool's files (what a restart would find)."""
    ids = []
    for path in sorted(directory.glob("*.json.gz")):
        ids += [event["transaction_id"] for event in json.loads(gzip.decompress(path.read_bytes()))]
    return ids


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds (the events it waits for come from other threads
    or processes); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def delivered(recorder: Recorder) -> Counter[str]:
    return Counter(event["transaction_id"] for event in recorder.events())


def collector_back(recorder: Recorder) -> None:
    """The collector answers again; what it refused while down is forgotten (the recorder
    keeps every request it got, refused or not), in one step with the switch."""
    with recorder.arrived:
        recorder.received.clear()
        recorder.default = Answer()


def ids(numbers: range) -> list[str]:
    return [wire_event(n)["transaction_id"] for n in numbers]


def run_agent(recorder: Recorder, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A separate process with an agent pointed at the recorder (``agent`` in ``script``)."""
    code = textwrap.dedent(
        f"""
        from moesif_agent import Agent
        from tests.test_transport import wire_event
        agent = Agent(application_id="test-app", base_uri={recorder.url!r},
                      batch_max_time=0.05, max_retry_time=0.2, batch_size=10)
        """
    ) + textwrap.dedent(script)
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_outage_longer_than_the_retry_budget_is_spooled_then_resent_once(
    recorder: Recorder, make_agent: Callable[..., Agent], spool_root: Path
) -> None:
    agent = make_agent(max_retry_time=0.2, batch_size=20)
    assert agent.flush(timeout=10)
    recorder.default = DOWN
    for n in range(100):
        agent.record(wire_event(n))
    assert agent.flush(timeout=10) is False  # not delivered: spooled
    stats = agent.stats()
    assert stats["dropped"] == {}
    assert stats["spool"]["spooled"] == 100
    assert sorted(spooled_ids(spool_dir(spool_root, recorder))) == sorted(ids(range(100)))

    collector_back(recorder)
    wait_until(lambda: len(delivered(recorder)) == 100, 20, "re-sent after recovery")
    wait_until(lambda: agent.stats()["spool"]["files"] == 0, 5, "spool emptied")
    assert set(delivered(recorder).values()) == {1}
    assert agent.stats()["spool"]["resent"] == 100
    assert list(spool_dir(spool_root, recorder).glob("*.json.gz")) == []


def test_the_spool_is_untouched_while_the_collector_is_healthy(
    recorder: Recorder, make_agent: Callable[..., Agent], spool_root: Path
) -> None:
    agent = make_agent()
    for n in range(50):
        agent.record(wire_event(n))
    assert agent.flush(timeout=10)
    assert not spool_root.exists()
    assert agent.stats()["spool"]["spooled"] == 0


def test_events_queued_at_exit_during_an_outage_are_sent_by_the_next_process_once(
    recorder: Recorder, spool_root: Path
) -> None:
    recorder.default = DOWN
    done = run_agent(
        recorder,
        """
        for n in range(60):
            agent.record(wire_event(n))
        """,
    )  # exits at once: the exit hook spools what the collector did not take
    assert done.returncode == 0, done.stderr
    assert sorted(spooled_ids(spool_dir(spool_root, recorder))) == sorted(ids(range(60)))

    collector_back(recorder)
    # Three processes start together on the same spool (a server's workers after a restart),
    # each staying until the spool is empty.
    directory = spool_dir(spool_root, recorder)
    script = f"""
        import pathlib, time
        while list(pathlib.Path({str(directory)!r}).glob("*.json.gz")):
            time.sleep(0.02)
        """
    with ThreadPoolExecutor(3) as pool:
        runs = list(pool.map(lambda _: run_agent(recorder, script), range(3)))
    assert [run.returncode for run in runs] == [0, 0, 0], [run.stderr for run in runs]
    assert set(delivered(recorder).values()) == {1}  # no file sent twice
    assert list(spool_dir(spool_root, recorder).glob("*.json.gz")) == []


def test_a_writer_killed_mid_write_leaves_nothing_that_blocks_delivery(
    recorder: Recorder, make_agent: Callable[..., Agent], spool_root: Path
) -> None:
    recorder.default = DOWN
    # The third spool file's fsync never returns: SIGKILL between writing and renaming.
    killed = run_agent(
        recorder,
        """
        import os, signal
        calls = []
        real_fsync = os.fsync
        def fsync(fd):
            calls.append(fd)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            real_fsync(fd)
        os.fsync = fsync
        for n in range(30):
            agent.record(wire_event(n))
        agent.flush(timeout=10)
        """,
    )
    assert killed.returncode == -9
    directory = spool_dir(spool_root, recorder)
    whole = spooled_ids(directory)
    assert 0 < len(whole) < 30  # the batches before the third were renamed into place
    (temp,) = directory.glob(".tmp-*")  # the third one, cut short
    # Plus what a disk error or another program could leave: a corrupt batch, a stray file.
    (directory / f"{time.time_ns():019d}-1-1-10.events.json.gz").write_bytes(b"\x1f\x8bnot gzip")
    (directory / "notes.txt").write_text("not ours")
    old = time.time() - 3600
    os.utime(temp, (old, old))

    collector_back(recorder)
    agent = make_agent()
    wait_until(lambda: len(delivered(recorder)) == 20, 20, "the whole files delivered")
    wait_until(lambda: agent.stats()["spool"]["files"] == 0, 5, "spool emptied")
    assert sorted(delivered(recorder)) == sorted(whole)
    assert agent.stats()["spool"]["set_aside"] == 2
    assert sorted(path.name for path in (directory / "bad").iterdir())[-1] == "notes.txt"
    assert not temp.exists()  # a stale temporary file is removed


def test_a_full_spool_drops_the_oldest_batches_and_counts_them(
    recorder: Recorder, make_agent: Callable[..., Agent], spool_root: Path
) -> None:
    bound = 60_000
    agent = make_agent(max_retry_time=0, batch_size=10, spool_max_bytes=bound)
    assert agent.flush(timeout=10)
    recorder.default = DOWN
    for start in range(0, 300, 10):
        for n in range(start, start + 10):
            event = wire_event(n)
            event["response"]["body"] = {"random": os.urandom(600).hex()}  # ~1 KB gzipped
            agent.record(event)
        agent.flush(timeout=10)
    directory = spool_dir(spool_root, recorder)
    on_disk = sum(path.stat().st_size for path in directory.glob("*.json.gz"))
    stats = agent.stats()
    assert on_disk <= bound
    kept = spooled_ids(directory)
    dropped = stats["dropped"]["spool_full"]
    assert dropped > 0 and dropped + len(kept) == 300
    assert kept == ids(range(300 - len(kept), 300))  # the newest are kept, in order
    assert stats["spool"]["bytes"] == on_disk


def _outage_past_a_broken_spool(
    agent: Agent, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> list[str]:
    """20 events in an outage with a spool that cannot take them: all dropped and counted,
    the spool off. Returns the warnings logged meanwhile."""
    assert agent.flush(timeout=10)
    recorder.default = DOWN
    with caplog.at_level(logging.WARNING, logger="moesif_agent"):
        for n in range(20):
            agent.record(wire_event(n))
        assert agent.flush(timeout=10) is False
    stats = agent.stats()
    assert stats["dropped"] == {"retries_exhausted": 20}
    assert stats["spool"]["enabled"] is False
    return [r.getMessage() for r in caplog.records]


def test_an_unwritable_spool_dir_switches_it_off_with_one_warning(
    recorder: Recorder,
    make_agent: Callable[..., Agent],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    agent = make_agent(max_retry_time=0, batch_size=5, spool_dir=str(blocker / "spool"))
    warnings = _outage_past_a_broken_spool(agent, recorder, caplog)
    assert len([m for m in warnings if "spool cannot be written" in m]) == 1


def test_a_spool_that_fails_unexpectedly_goes_off_and_the_worker_goes_on(
    recorder: Recorder,
    make_agent: Callable[..., Agent],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whatever the spool raises (here a bug of its own), the worker survives: the spool goes
    off with one warning, the batches are dropped and counted, and delivery resumes."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("spool bug")

    monkeypatch.setattr(Spool, "write", broken)
    agent = make_agent(max_retry_time=0, batch_size=5)
    warnings = _outage_past_a_broken_spool(agent, recorder, caplog)
    assert [m for m in warnings if "RuntimeError: spool bug" in m]

    recorder.default = Answer()
    agent.record(wire_event(99))
    assert agent.flush(timeout=10)
    assert agent.stats()["sent"] == 1


def test_memory_pressure_spools_a_batch_being_retried_instead_of_dropping_new_events(
    recorder: Recorder, make_agent: Callable[..., Agent], spool_root: Path
) -> None:
    # Retried for a minute in memory, the queue (200) would overflow; half full, the batch
    # being retried goes to the spool and so does everything after it.
    agent = make_agent(max_retry_time=60, event_queue_size=200, batch_size=50)
    assert agent.flush(timeout=10)
    recorder.default = DOWN
    for n in range(1000):
        wait_until(lambda: agent.stats()["queued"] < 150, 5, "room in the queue")
        agent.record(wire_event(n))
    agent.flush(timeout=10)
    stats: dict[str, Any] = agent.stats()
    assert stats["dropped"] == {}
    assert stats["spool"]["spooled"] == 1000


def test_a_flush_with_a_deadline_spools_what_retrying_would_not_deliver_by_then(
    recorder: Recorder, make_agent: Callable[..., Agent], spool_root: Path
) -> None:
    # The last flush before an exit (a server's lifespan shutdown): the batch would be retried
    # for a minute, the process has two seconds.
    agent = make_agent(max_retry_time=60)
    assert agent.flush(timeout=10)
    recorder.default = DOWN
    for n in range(10):
        agent.record(wire_event(n))
    started = time.monotonic()
    assert agent.flush(timeout=2) is False
    assert time.monotonic() - started < 2
    assert sorted(spooled_ids(spool_dir(spool_root, recorder))) == sorted(ids(range(10)))
