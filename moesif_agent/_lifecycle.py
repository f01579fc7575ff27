"""Process-wide lifecycle: the registries of live agents and transports, fork and exit.

Everything that must happen to every agent of the process at once lives here. After a fork the
child gets fresh locks (a lock another thread held at fork time would stay held forever) and
empty queues (the parent delivers what it queued); each transport starts a new worker when the
child first queues something. At exit every transport delivers what it holds within its
deadline.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from . import _guard

if TYPE_CHECKING:
    from ._options import Options


class ForkAware(Protocol):
    def after_fork_in_child(self) -> None: ...


class Stoppable(ForkAware, Protocol):
    def begin_shutdown(self, timeout: float | None = None) -> None: ...

    def join(self) -> None: ...


T = TypeVar("T")

_agents: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_transports: weakref.WeakSet[Stoppable] = weakref.WeakSet()
_shared: dict[Options, object] = {}
_shared_lock = threading.Lock()

# Held by a thread making its process's first call to the collector, which imports modules
# lazily (building the pool: httpcore, h11, certifi; resolving the host: the idna codec), and
# by ``os.fork`` before it forks: a child must not inherit a module another thread was half
# way through importing, which stays broken in it for good, or its import lock held forever
# (gunicorn --preload forks right after loading the app, as the master's worker starts; seen
# here: "partially initialized module 'httpcore'", "unknown encoding: idna", hung workers).
# The imports take ~0.1 s; a fork waits at most _FORK_WAIT for a call stuck on the network
# (no import is running then).
fork_guard = threading.RLock()
_FORK_WAIT = 2.0
_fork_waited = False


def register_agent(agent: ForkAware) -> None:
    _agents.add(agent)


def register_transport(transport: Stoppable) -> None:
    _transports.add(transport)


def live_agents() -> list[ForkAware]:
    """The agents alive in this process."""
    return list(_agents)


def shared(options: Options, create: Callable[[Options], T]) -> T:
    """The one object made by ``create`` for these options in this process."""
    with _shared_lock:
        found = _shared.get(options)
        if found is None:
            found = _shared[options] = create(options)
        return found  # type: ignore[return-value]


def forget_shared() -> list[object]:
    """Forget the shared objects and return them (for tests that start afresh)."""
    with _shared_lock:
        found = list(_shared.values())
        _shared.clear()
    return found


# This process's id, kept current across forks: read on every request, where os.getpid() would
# be a system call.
pid = os.getpid()


def _after_fork_in_child() -> None:
    global _shared_lock, fork_guard, _fork_waited, pid
    pid = os.getpid()
    _shared_lock = threading.Lock()
    fork_guard = threading.RLock()
    _fork_waited = False
    _guard.after_fork_in_child()
    for transport in list(_transports):
        transport.after_fork_in_child()
    for agent in list(_agents):
        agent.after_fork_in_child()


def shutdown_all() -> None:
    """Deliver what every transport holds, each within its shutdown deadline, in parallel."""
    transports = list(_transports)
    for transport in transports:
        transport.begin_shutdown()
    for transport in transports:
        transport.join()


def _before_fork() -> None:
    global _fork_waited
    _fork_waited = fork_guard.acquire(timeout=_FORK_WAIT)


def _after_fork_in_parent() -> None:
    global _fork_waited
    if _fork_waited:
        _fork_waited = False
        fork_guard.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
atexit.register(shutdown_all)
