"""What the collector's config and rules decide for one request: sampling and governance tied
together in one immutable ``Policy``.

``Policy`` is built on the worker thread from ``/v1/config`` and ``/v1/rules`` (anything
malformed is skipped and logged once) and swapped in by the agent with one assignment, so the
request thread always sees one consistent version without locks. Evaluating it (``begin``,
``sample_rate``) never raises into a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._conditions import View
from ._forwarding import Forwarding
from ._governance import Block, Governance, Plan
from ._sampling import Sampling, keeps

if TYPE_CHECKING:
    from ._exchange import Exchange

__all__ = ["DEFAULT_POLICY", "Block", "Plan", "Policy", "keeps"]


class Policy:
    """Sampling and governance for one version of the collector's config and rules."""

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        rules: Any = None,
        *,
        trusted: Forwarding | None = None,
        etag: str | None = None,
    ) -> None:
        config = config or {}
        self.etag = etag
        self.trusted = trusted or Forwarding(())
        self.sampling = Sampling(config)
        self.governance = Governance(rules, config)
        self.needs_identity = self.governance.needs_identity  # before the app, for governance
        # Read ahead before the app when conditions test body fields, so that governance can
        # act on them and sampling can be decided before the bodies are copied.
        self.needs_body = self.governance.needs_body or self.sampling.needs_body
        self.samples_users = self.sampling.needs_identity
        self.trivial = self.sampling.trivial and self.governance.empty

    def begin(self, ex: Exchange, body: bytes | None = None) -> Plan | None:
        """Before the app: governance, and sampling when it can already be decided."""
        if self.trivial:
            return None
        view = View(ex, self.trusted, body)
        plan = None
        if not self.governance.empty:
            plan = self.governance.evaluate(view, ex.user_id, ex.company_id)
        if not self.sampling.trivial and (plan is None or plan.block is None):
            rate = self.sampling.early_rate(view)
            if rate is not None:
                ex.sample_rate = rate
                if not keeps(ex.transaction_id, rate):
                    if plan is None:
                        plan = Plan(capture=False)
                    else:
                        plan.capture = False
        return plan

    def sample_rate(self, ex: Exchange) -> float:
        """The rate for a finished exchange (``ex.sample_rate`` when decided earlier)."""
        if ex.sample_rate is not None:
            return ex.sample_rate
        if self.sampling.trivial:
            return 100.0
        return self.sampling.rate(View(ex, self.trusted, None), ex.user_id, ex.company_id)


DEFAULT_POLICY = Policy()
