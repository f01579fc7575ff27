"""What the agent tells the host's log about delivery (worker thread).

A few lines per process and outage, never one per request or per batch: one INFO line when a
process starts sending, the first failed call to the collector at once (WARNING, with what to
check), one INFO line when it answers again, and the spool's changes of state. Each kind of
failure is announced at most once per ``_REPEAT`` seconds; repeats and details go to DEBUG
(``debug=True`` shows them).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._client import Outcome

logger = logging.getLogger(__name__)

_REPEAT = 600.0
# Answers that say the collector cannot take anything now (the others, such as 400 or 413,
# are about one batch and reported where it is handled).
_UNHEALTHY = frozenset({401, 402, 403, 408, 429})


def short_id(application_id: str) -> str:
    """Enough of an application id to recognise it in a log, not enough to use it."""
    if len(application_id) > 12:
        return f"{application_id[:4]}…{application_id[-4:]}"
    return f"{application_id[:2]}…"


def hint(status: int | None, error: str | None = None) -> str:
    """What to check, for a failed call's status (None: no answer)."""
    if status is None:
        if error and "Timeout" in error:
            return "no answer in time: is base_uri right? is the collector overloaded?"
        return "connection refused or unreachable: is base_uri right?"
    if status == 401:
        return "the collector does not know this application id: check application_id"
    if status == 402:
        return "the collector says the subscription is not active"
    if status == 403:
        return "the collector refuses this application id: check application_id"
    if status == 413:
        return "too large for the collector"
    if status == 429:
        return "rate limited by the collector"
    if status >= 500:
        return "the collector failed"
    return "the collector refused the data"


def unhealthy(status: int | None) -> bool:
    """Whether an answer (None: no answer) says the collector cannot take anything now."""
    return status is None or status >= 500 or status in _UNHEALTHY


def _cause(status: int | None, error: str | None) -> str:
    if status is None:
        return "timeout" if error and "Timeout" in error else "unreachable"
    return "5xx" if status >= 500 else str(status)


class Health:
    """The collector's health as one process sees it, and the log lines that say so."""

    def __init__(self, base_uri: str) -> None:
        self.base_uri = base_uri
        self.failing = False
        self.announced = False  # the current failure was logged at WARNING
        self.failures = 0  # failed calls since the last success
        self.since = 0.0
        self._warned: dict[str, float] = {}

    def observe(self, method: str, path: str, outcome: Outcome) -> None:
        """Every call to the collector, each attempt of it (the client's worker thread)."""
        status = outcome.status
        if not unhealthy(status):
            if self.failing:
                self._recovered()
            return
        now = time.monotonic()
        if not self.failing:
            self.failing, self.announced, self.failures, self.since = True, False, 0, now
        self.failures += 1
        cause = _cause(status, outcome.error)
        last = self._warned.get(cause)
        if not self.announced and (last is None or now - last >= _REPEAT):
            self._warned[cause] = now
            self.announced = True
            logger.warning(
                "moesif-agent: %s %s%s failed: %s (%s); %s",
                method,
                self.base_uri,
                path,
                outcome.error,
                hint(status, outcome.error),
                "events are kept and retried"
                if outcome.retryable
                else "nothing is delivered until this is fixed",
            )
        else:
            logger.debug("moesif-agent: %s %s failed: %s", method, path, outcome.error)

    def _recovered(self) -> None:
        level = logging.INFO if self.announced else logging.DEBUG
        logger.log(
            level,
            "moesif-agent: the collector at %s answers again (after %d failed calls in %.0f s)",
            self.base_uri,
            self.failures,
            time.monotonic() - self.since,
        )
        self.failing = self.announced = False
        self.failures = 0
