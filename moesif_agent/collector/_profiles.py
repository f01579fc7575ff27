"""Check profile items (users, companies, subscriptions) against the spec's field tables.

The profiles' sibling of ``_validate`` (events and actions), with the same helpers: every error
names the JSON path of the bad field.
"""

from __future__ import annotations

from typing import Any

from ._errors import ClientError
from ._validate import each, json_kind, object_at, string_at, strings_at, time_at

SUBSCRIPTION_STATUSES = frozenset(
    {"active", "cancelled", "paused", "trialing", "pending", "draft", "future"}
)
_CAMPAIGN_FIELDS = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "referrer",
    "referring_domain",
    "gclid",
)


def _campaign(item: dict[str, Any]) -> None:
    campaign = object_at(item, "campaign", "campaign", False)
    if campaign is not None:
        strings_at(campaign, "campaign.", _CAMPAIGN_FIELDS)


def _user(item: object) -> dict[str, Any]:
    if type(item) is not dict:
        raise ClientError(400, f"a user must be a JSON object, not {json_kind(item)}")
    string_at(item, "user_id", "user_id", True)
    strings_at(item, "", ("company_id", "session_token", "ip_address", "user_agent_string"))
    time_at(item, "modified_time", "modified_time", False)
    _campaign(item)
    object_at(item, "metadata", "metadata", False)
    return item


def _company(item: object) -> dict[str, Any]:
    if type(item) is not dict:
        raise ClientError(400, f"a company must be a JSON object, not {json_kind(item)}")
    string_at(item, "company_id", "company_id", True)
    strings_at(item, "", ("company_domain", "session_token", "ip_address"))
    time_at(item, "modified_time", "modified_time", False)
    _campaign(item)
    object_at(item, "metadata", "metadata", False)
    return item


def _subscription(item: object, status_required: bool) -> dict[str, Any]:
    if type(item) is not dict:
        raise ClientError(400, f"a subscription must be a JSON object, not {json_kind(item)}")
    string_at(item, "subscription_id", "subscription_id", True)
    string_at(item, "company_id", "company_id", True)
    time_at(item, "current_period_start", "current_period_start", False)
    time_at(item, "current_period_end", "current_period_end", False)
    status = string_at(item, "status", "status", status_required)
    if status is not None and status not in SUBSCRIPTION_STATUSES:
        raise ClientError(
            400,
            f"status must be one of {', '.join(sorted(SUBSCRIPTION_STATUSES))}, "
            f"not {status[:32]!r}",
            field="status",
        )
    object_at(item, "metadata", "metadata", False)
    return item


def users(items: list[Any], batch: bool) -> list[dict[str, Any]]:
    return each(items, _user, batch)


def companies(items: list[Any], batch: bool) -> list[dict[str, Any]]:
    return each(items, _company, batch)


def subscriptions(items: list[Any], batch: bool) -> list[dict[str, Any]]:
    # The spec's field tables disagree: status is required for one subscription ("Update a
    # Subscription") and optional in a batch ("Update Subscriptions in Batch").
    return each(items, lambda item: _subscription(item, not batch), batch)
