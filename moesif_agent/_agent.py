"""The agent: options, queues, worker, and the request-path entry points adapters call."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from . import _entities as entities
from . import _lifecycle
from ._capture import credentials_user, refill_transaction_ids
from ._client import CollectorClient, MemorySink, Outcome
from ._exchange import Exchange
from ._guard import internal_error
from ._health import Health
from ._options import Options
from ._policy import DEFAULT_POLICY, Policy
from ._queues import Channel, Counter, Held, Skip, item_size
from ._remote import RemoteConfig
from ._sampling import keeps
from ._transport import Transport
from ._wire import WireEncoder

logger = logging.getLogger("moesif_agent")

__all__ = ["Agent"]

_ENTITY_METHODS = (
    "update_user",
    "update_users_batch",
    "update_company",
    "update_companies_batch",
    "update_subscription",
    "update_subscriptions_batch",
    "track_action",
    "track_actions_batch",
)


def all_agents() -> list[Agent]:
    """The agents alive in this process."""
    return [agent for agent in _lifecycle.live_agents() if isinstance(agent, Agent)]


class Agent:
    """Captures API calls and delivers them to the collector from one background thread.

    Framework middleware create (and share) agents for you; use one directly to record your
    own events or to flush before a short-lived process exits::

        agent = Agent(application_id="your-app-id")
        agent.record({"request": {...}, "response": {...}})
        agent.flush(timeout=5)

    ``record()`` never blocks and never raises. ``flush()`` and ``shutdown()`` are safe to call
    any number of times; an exit hook flushes with ``shutdown_timeout`` as the deadline.
    """

    def __init__(self, options: Options | Mapping[str, Any] | None = None, **overrides: Any):
        self.options = Options.coerce(options, **overrides)
        _configure_debug(self.options.debug)
        options = self.options
        self._encoder = WireEncoder(options)
        size, max_bytes = options.event_queue_size, options.queue_max_bytes
        self._events = Channel("events", "/v1/events/batch", size, self._encode, max_bytes)
        self._entities = {
            name: Channel(name, kind.path, size, entities.encode, max_bytes)
            for name, kind in entities.KINDS.items()
        }
        self._sink = MemorySink() if options.dry_run else None
        sender = self._sink or CollectorClient(options, Health(options.base_uri))
        self.enabled = options.enabled
        self.policy: Policy = DEFAULT_POLICY  # replaced whole by the worker, never mutated
        self._remote = RemoteConfig(options, sender, self._install_policy)
        self._transport = Transport(
            options,
            [self._events, *self._entities.values()],
            sender,
            on_outcome=self._remote.on_outcome,
            periodic=self._periodic,
        )
        # Requests seen per sample rate since the last kept event at that rate: a kept event's
        # weight is the number of requests it stands for, so weights sum to the request count.
        self._gaps: dict[float, int] = {}
        self._gaps_lock = threading.Lock()
        # Counted here, incremented by the request core (integrations/_core.py).
        self._captured = Counter()
        self._skipped = Counter()
        self._sampled_out = Counter()
        self._blocked = Counter()
        _lifecycle.register_agent(self)
        if options.capture_outgoing and self.enabled:
            from .integrations import _outgoing

            _outgoing.install(self)
        if self.enabled:
            # The first config fetch starts now, on the worker: never waited for here.
            self._transport.start()

    @classmethod
    def shared(cls, options: Options) -> Agent:
        """The process's agent for these options: middleware built alike share one worker."""
        return _lifecycle.shared(options, cls)

    def after_fork_in_child(self) -> None:
        self._gaps_lock = threading.Lock()

    def record(self, event: Exchange | Mapping[str, Any]) -> None:
        """Queue one API call (an adapter's Exchange, or a wire-format event dict).

        Applies the collector's sampling; never blocks, never raises."""
        if not self.enabled:
            return
        try:
            if isinstance(event, Exchange):
                if not self._remote.settled:  # the config is not known yet: the worker decides
                    self._transport.put(self._events, Held(event), item_size(event))
                    return
                if not self._sample(event):
                    self._sampled_out.increment()
                    return
            self._captured.increment()
            self._transport.put(self._events, event, item_size(event))
        except Exception:
            internal_error("record")

    def _encode(self, item: Any) -> bytes:
        """The events channel's encoder (worker): an exchange held until the config was known
        is sampled here first, with the config in force now."""
        if type(item) is Held:
            item = item.ex
            if not self._sample(item):
                self._sampled_out.increment()
                raise Skip
            self._captured.increment()
        return self._encoder.encode(item)

    def _sample(self, ex: Exchange) -> bool:
        """Keep or drop (deterministic per transaction id), and set the kept event's weight."""
        policy = self.policy
        if ex.sample_rate is None and policy.sampling.trivial:
            return True
        if policy.samples_users and ex.user_id is None and ex.direction == "Incoming":
            options = self.options
            ex.user_id = credentials_user(
                ex, options.authorization_header_name, options.authorization_user_id_field
            )
        rate = policy.sample_rate(ex)
        if rate >= 100:
            return True
        keep = keeps(ex.transaction_id, rate)
        with self._gaps_lock:
            seen = self._gaps.get(rate, 0) + 1
            self._gaps[rate] = 0 if keep else seen
        if keep:
            ex.weight = seen
        return keep

    def _install_policy(self, policy: Policy) -> None:
        self.policy = policy

    def _periodic(self) -> None:
        """On every wake of the worker: the config refresh, and transaction ids made ahead
        for the request threads."""
        self._remote.tick()
        refill_transaction_ids()

    # Lifecycle -----------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything recorded so far is delivered, and the collector's config
        was fetched (answered or failed); False on timeout or failure."""
        if not self.enabled:
            return True
        return self._transport.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> None:
        """Deliver what is queued within ``timeout`` (default ``shutdown_timeout``), then stop."""
        self._transport.shutdown(timeout)

    def stats(self) -> dict[str, Any]:
        """Counters: captured, queued, sent, dropped by reason, retries, batches, last_error,
        the config in force and the spool (README: Delivery, lifecycle and fork)."""
        stats = self._transport.stats()
        return {
            "captured": self._captured.value,
            "skipped": self._skipped.value,
            "sampled_out": self._sampled_out.value,
            "blocked": self._blocked.value,
            **stats,
            "config": {
                "etag": self.policy.etag,
                "fetches": self._remote.fetches,
                "fetch_failures": self._remote.failures,
                "rules_skipped": self.policy.governance.skipped,
            },
        }

    # Dry run -----------------------------------------------------------------------------------

    @property
    def dry_run_events(self) -> list[dict[str, Any]]:
        """With ``dry_run=True``: the events that would have been sent (masked), oldest first.

        Call ``flush()`` first so that everything recorded has been processed."""
        return self._sink.read("/v1/events/batch") if self._sink is not None else []

    def dry_run_items(self, kind: str) -> list[dict[str, Any]]:
        """With ``dry_run=True``: the users, companies, subscriptions or actions kept."""
        return self._sink.read(entities.KINDS[kind].path) if self._sink is not None else []

    # Users, companies, subscriptions, actions ----------------------------------------------------

    def update_user(self, user: Mapping[str, Any], *, sync: bool = False) -> Outcome | None:
        """Create or update a user profile (``user_id`` required; ``metadata`` is merged).

        Queued and sent in a batch by the worker (returns None at once); with ``sync=True``
        it is sent now and the collector's answer returned. Invalid input raises here."""
        return self._entity("users", [user], "update_user", sync, single=True)

    def update_users_batch(
        self, users: Iterable[Mapping[str, Any]], *, sync: bool = False
    ) -> Outcome | None:
        return self._entity("users", users, "update_users_batch", sync)

    def update_company(self, company: Mapping[str, Any], *, sync: bool = False) -> Outcome | None:
        """Create or update a company profile (``company_id`` required)."""
        return self._entity("companies", [company], "update_company", sync, single=True)

    def update_companies_batch(
        self, companies: Iterable[Mapping[str, Any]], *, sync: bool = False
    ) -> Outcome | None:
        return self._entity("companies", companies, "update_companies_batch", sync)

    def update_subscription(
        self, subscription: Mapping[str, Any], *, sync: bool = False
    ) -> Outcome | None:
        """Create or update a subscription (``subscription_id`` and ``company_id`` required)."""
        return self._entity(
            "subscriptions", [subscription], "update_subscription", sync, single=True
        )

    def update_subscriptions_batch(
        self, subscriptions: Iterable[Mapping[str, Any]], *, sync: bool = False
    ) -> Outcome | None:
        return self._entity("subscriptions", subscriptions, "update_subscriptions_batch", sync)

    def track_action(self, action: Mapping[str, Any], *, sync: bool = False) -> Outcome | None:
        """Record a user action (``action_name`` and ``request.uri`` required)."""
        return self._entity("actions", [action], "track_action", sync, single=True)

    def track_actions_batch(
        self, actions: Iterable[Mapping[str, Any]], *, sync: bool = False
    ) -> Outcome | None:
        return self._entity("actions", actions, "track_actions_batch", sync)

    async def send_async(self, method: str, items: Any) -> Outcome | None:
        """Call one of the methods above with ``sync=True`` without blocking the event loop::

        outcome = await agent.send_async("update_user", {"user_id": "u1"})
        """
        if method not in _ENTITY_METHODS:
            raise ValueError(f"send_async: method must be one of {', '.join(_ENTITY_METHODS)}")
        bound = getattr(self, method)
        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(bound, items, sync=True)
        )

    def _entity(
        self, name: str, items: Any, method: str, sync: bool, single: bool = False
    ) -> Outcome | None:
        kind = entities.KINDS[name]
        if single:
            validated = [entities.validate(kind, items[0], method)]
        else:
            validated = entities.validate_many(kind, items, method)
        if not self.enabled or not validated:
            return None
        if sync:
            return self._send_now(kind, validated)
        channel = self._entities[name]
        for item in validated:
            self._transport.put(channel, item, item_size(item))
        return None

    def _send_now(self, kind: entities.Kind, items: list[dict[str, Any]]) -> Outcome:
        payload = b"[" + b",".join(entities.encode(item) for item in items) + b"]"
        if self._sink is not None:
            return self._sink.post_json(kind.path, payload)
        client = CollectorClient(self.options)
        try:
            return client.post_json(kind.path, payload)
        finally:
            client.close()


_debug_handler: logging.Handler | None = None


def _configure_debug(debug: bool) -> None:
    """``debug=True`` shows the agent's DEBUG logs on stderr; the host's logging is untouched."""
    global _debug_handler
    if not debug or _debug_handler is not None:
        return
    _debug_handler = logging.StreamHandler(sys.stderr)
    _debug_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    package_logger = logging.getLogger("moesif_agent")
    package_logger.addHandler(_debug_handler)
    package_logger.setLevel(logging.DEBUG)
