"""Dynamic sampling from ``/v1/config``: the rate for a request, and the keep decision."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

from ._conditions import ConditionGroup, RouteFilter, View, bad_config, compile_group


def _rate(value: Any, where: str) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        bad_config(where, f"sample rate must be a number from 0 to 100, got {value!r}")
        return None
    return float(value)


def _rate_map(raw: Any, where: str) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        bad_config(where, "must be an object of id -> rate")
        return {}
    rates = {}
    for key, value in raw.items():
        rate = _rate(value, f"{where}[{key!r}]")
        if rate is not None:
            rates[str(key)] = rate
    return rates


class Sampling:
    """``/v1/config`` sampling: first matching regex_config entry, then the user's rate, then
    the company's, then ``sample_rate``; 100 when nothing says otherwise."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        default = config.get("sample_rate")
        rate = _rate(default, "config sample_rate") if default is not None else None
        self.default = 100.0 if rate is None else rate
        self.users = _rate_map(config.get("user_sample_rate"), "config user_sample_rate")
        self.companies = _rate_map(config.get("company_sample_rate"), "config company_sample_rate")
        self.regex: list[tuple[ConditionGroup | None, float]] = []
        raw = config.get("regex_config") or []
        if not isinstance(raw, list):
            bad_config("config regex_config", "must be a list")
            raw = []
        for index, entry in enumerate(raw):
            where = f"config regex_config[{index}]"
            group = compile_group(entry, where, anchored=False)
            rate = _rate(entry.get("sample_rate") if isinstance(entry, Mapping) else None, where)
            # An entry that cannot match is kept as None so it never matches, in place.
            self.regex.append((group if rate is not None else None, rate or 0.0))
        self.trivial = self.default >= 100 and not (self.regex or self.users or self.companies)
        self.needs_identity = bool(self.users or self.companies)
        self.needs_body = any(g is not None and g.needs_body for g, _ in self.regex)
        self.filter = RouteFilter([g for g, _ in self.regex if g is not None], anchored=False)
        # What is left when the filter rules out every entry with a route condition.
        self._routeless: list[tuple[ConditionGroup | None, float]] = [
            (g, r) for g, r in self.regex if g is not None and g.route is None
        ]

    def _candidates(self, view: View) -> list[tuple[ConditionGroup | None, float]]:
        return self._routeless if self.filter.excludes(view.ex.path) else self.regex

    def early_rate(self, view: View) -> float | None:
        """The rate when it can be known before the app runs, else None."""
        for group, rate in self._candidates(view):
            if group is None:
                continue
            if group.needs_response or (group.needs_body and not view.has_body):
                return None  # decided when the call is recorded
            if group.matches(view):
                return rate
        if self.users or self.companies:
            return None
        return self.default

    def rate(self, view: View, user_id: str | None, company_id: str | None) -> float:
        for group, rate in self._candidates(view):
            if group is not None and group.matches(view):
                return rate
        if user_id is not None and user_id in self.users:
            return self.users[user_id]
        if company_id is not None and company_id in self.companies:
            return self.companies[company_id]
        return self.default


def keeps(transaction_id: str, rate: float) -> bool:
    """The deterministic keep decision: the same transaction id always gets the same answer."""
    if rate >= 100:
        return True
    if rate <= 0:
        return False
    return _bucket(transaction_id) < rate * 100


def _bucket(transaction_id: str) -> int:
    return zlib.crc32(transaction_id.encode("utf-8", "replace")) % 10_000
