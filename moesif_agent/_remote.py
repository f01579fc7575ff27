"""Fetching ``/v1/config`` and ``/v1/rules`` and installing the compiled policy (worker thread).

The first fetch is the worker's first act when the agent starts (never on a request, never
delaying startup); events recorded before it ends wait on the worker and are sampled by
what it brought (``settled``). After that: a periodic refresh
(``config_refresh_interval``), and a refresh as soon as a batch response carries a
``X-Moesif-Config-ETag`` other than the one in force, at most once per ``debounce`` seconds,
so two collector instances answering with different ETags cannot cause a fetch per batch.
A failed fetch keeps the policy in force and is retried with backoff; a malformed document
keeps the last good one. New documents (and their ETags) are kept only once a policy was
compiled from them: if compiling fails, the policy in force stays, and the next refresh
fetches them whole again (the same ``X-Moesif-Config-ETag`` does not trigger it).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _guard
from ._forwarding import Forwarding
from ._guard import log_once
from ._health import unhealthy
from ._policy import Policy

if TYPE_CHECKING:
    from ._client import Outcome
    from ._options import Options
    from ._transport import Sender

logger = logging.getLogger(__name__)

_BACKOFF_FIRST = 5.0


class RemoteConfig:
    """The collector's config and rules, kept current on the worker through ``sender``."""

    def __init__(self, options: Options, sender: Sender, install: Callable[[Policy], None]) -> None:
        self.sender = sender
        self.install = install
        self.interval = options.config_refresh_interval
        self.debounce = 10.0
        self.trusted = Forwarding(options.trusted_proxies, options.client_ip_header)
        self.enabled = not options.dry_run
        # The first fetch ended (answered or failed): sampling can be decided at record time.
        self.settled = not self.enabled
        self.etag: str | None = None  # X-Moesif-Config-ETag of the policy in force
        self.rejected: str | None = None  # ... of documents no policy could be compiled from
        self.next_fetch = 0.0  # monotonic; 0 means "on the first tick"
        self.last_triggered = float("-inf")  # last fetch caused by an ETag change
        self.triggered = False
        self.failures = 0
        self.fetches = 0
        self.config: Any = None  # last good documents
        self.rules: Any = None
        self._config_etag: str | None = None  # HTTP ETags, for If-None-Match
        self._rules_etag: str | None = None

    # Worker hooks

    def on_outcome(self, outcome: Outcome) -> None:
        """A batch response: a new config ETag brings the next fetch forward, to now unless an
        ETag change already caused a fetch within the last ``debounce`` seconds."""
        etag = outcome.config_etag
        if not self.enabled or not etag or etag in (self.etag, self.rejected) or not self.fetches:
            return  # (before the first fetch there is nothing to refresh: it is due anyway)
        self.triggered = True
        self.next_fetch = min(self.next_fetch, self.last_triggered + self.debounce)

    def tick(self) -> None:
        if not self.enabled or time.monotonic() < self.next_fetch:
            return
        self.fetch()

    # Fetching

    def fetch(self) -> None:
        now = time.monotonic()
        if self.triggered:
            self.triggered = False
            self.last_triggered = now
        self.fetches += 1
        try:
            self._fetch(now)
        finally:
            self.settled = True

    def _fetch(self, now: float) -> None:
        client = self.sender
        config = client.get("/v1/config", etag=self._config_etag, retry=False)
        rules = config
        if config.ok or config.status == 304:  # else the collector is down: one wait, not two
            rules = client.get("/v1/rules", etag=self._rules_etag, retry=False)
        if not (config.ok or config.status == 304) or not (rules.ok or rules.status == 304):
            self.failures += 1
            delay = min(self.interval, _BACKOFF_FIRST * 2 ** (self.failures - 1))
            self.next_fetch = now + delay * random.uniform(0.8, 1.2)
            failed = config if not (config.ok or config.status == 304) else rules
            # The client's Health says it when the collector cannot answer at all; other
            # answers are about the config itself.
            log_once(
                f"config-fetch:{failed.status}",
                logging.DEBUG if unhealthy(failed.status) else logging.WARNING,
                "moesif-agent: could not fetch the collector's config/rules (%s); keeping the "
                "current sampling and governance, retrying with backoff (logged once)",
                failed.error,
            )
            return
        self.failures = 0
        self.next_fetch = now + self.interval * random.uniform(0.9, 1.1)
        new_config, config_etag = self.config, self._config_etag
        new_rules, rules_etag = self.rules, self._rules_etag
        changed = False
        if config.ok:
            document = _parse(config.content, "config", dict)
            if document is not None:
                new_config, config_etag, changed = document, config.etag, True
        if rules.ok:
            document = _parse(rules.content, "rules", list)
            if document is not None:
                new_rules, rules_etag, changed = document, rules.etag, True
        etag = config.config_etag or rules.config_etag or self.etag
        if not changed:
            self.etag = etag
            return
        try:
            policy = Policy(new_config, new_rules, trusted=self.trusted, etag=etag)
        except Exception as exc:
            # Nothing of these documents is kept: not their ETags either, so that the next
            # refresh fetches them whole rather than hearing "not modified".
            self.rejected = etag
            log_once(
                f"config-compile:{type(exc).__name__}",
                logging.ERROR,
                "moesif-agent: could not compile the collector's config/rules (etag %s): %s: "
                "%s; keeping the current sampling and governance (logged once)",
                etag,
                type(exc).__name__,
                exc,
                exc_info=True,
            )
            if _guard.reraise:
                raise
            return
        self.config, self._config_etag = new_config, config_etag
        self.rules, self._rules_etag = new_rules, rules_etag
        self.etag, self.rejected = etag, None
        self.install(policy)
        logger.debug(
            "moesif-agent: new config/rules (etag %s): sample_rate %s, %d sampling "
            "entries, %d rules (%d skipped)",
            self.etag,
            policy.sampling.default,
            len(policy.sampling.regex),
            len(self.rules or ()),
            policy.governance.skipped,
        )


def _parse(content: bytes, what: str, kind: type) -> Any:
    try:
        document = json.loads(content)
    except (ValueError, RecursionError) as exc:
        log_once(
            f"config-parse:{what}:{content[:64]!r}",
            logging.WARNING,
            "moesif-agent: the collector's /v1/%s answer is not valid JSON (%s); "
            "keeping the last good one",
            what,
            exc,
        )
        return None
    if not isinstance(document, kind):
        log_once(
            f"config-type:{what}:{type(document).__name__}",
            logging.WARNING,
            "moesif-agent: the collector's /v1/%s answer is a JSON %s, expected %s; "
            "keeping the last good one",
            what,
            type(document).__name__,
            "an object" if kind is dict else "a list",
        )
        return None
    return document
