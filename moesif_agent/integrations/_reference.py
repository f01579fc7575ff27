"""The reference agents' instance methods, on every middleware.

moesifwsgi, moesifasgi and moesifdjango document ``middleware.update_user({...})`` and its
siblings (moesifdjango with ``MoesifMiddleware(None)``, a middleware built only to call them).
Each method here hands the same payload to the middleware's agent, which checks it at the call
and queues it; the worker sends it in a batch. Code written for those agents keeps working
with only the import changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._agent import Agent
    from .._client import Outcome

__all__ = ["ReferenceMethods"]


class _HasAgent(Protocol):
    @property
    def agent(self) -> Agent: ...


class ReferenceMethods:
    """``update_user``, ``update_users_batch``, ``update_company``, ``update_companies_batch``,
    ``update_subscription`` and ``update_subscriptions_batch``, as the reference agents name
    them: queued (``None`` at once), or sent now with ``sync=True`` (the collector's
    :class:`~moesif_agent.Outcome`). A payload missing its id raises ``ValueError`` here."""

    __slots__ = ()

    def update_user(
        self: _HasAgent, user_profile: Mapping[str, Any], *, sync: bool = False
    ) -> Outcome | None:
        return self.agent.update_user(user_profile, sync=sync)

    def update_users_batch(
        self: _HasAgent, user_profiles: Iterable[Mapping[str, Any]], *, sync: bool = False
    ) -> Outcome | None:
        return self.agent.update_users_batch(user_profiles, sync=sync)

    def update_company(
        self: _HasAgent, company_profile: Mapping[str, Any], *, sync: bool = False
    ) -> Outcome | None:
        return self.agent.update_company(company_profile, sync=sync)

    def update_companies_batch(
        self: _HasAgent, companies_profiles: Iterable[Mapping[str, Any]], *, sync: bool = False
    ) -> Outcome | None:
        return self.agent.update_companies_batch(companies_profiles, sync=sync)

    def update_subscription(
        self: _HasAgent, subscription: Mapping[str, Any], *, sync: bool = False
    ) -> Outcome | None:
        return self.agent.update_subscription(subscription, sync=sync)

    def update_subscriptions_batch(
        self: _HasAgent, subscriptions: Iterable[Mapping[str, Any]], *, sync: bool = False
    ) -> Outcome | None:
        return self.agent.update_subscriptions_batch(subscriptions, sync=sync)
