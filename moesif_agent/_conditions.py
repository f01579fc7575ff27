"""Conditions on a request (and its response), shared by sampling and governance.

The collector's ``regex_config`` entries are compiled once, on the worker, into condition
groups; the request thread only evaluates them. A path or regex that cannot be evaluated is
logged once and never matches (it must not force a sample rate or a block).
"""

from __future__ import annotations

import json
import logging
import operator
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import regex

from ._capture import header_dict, header_value
from ._forwarding import Forwarding
from ._guard import log_once

if TYPE_CHECKING:
    from ._exchange import Exchange


class View:
    """What conditions look at: one request (and, at the end, its response), read lazily."""

    __slots__ = ("_body", "_headers", "_ip", "body_raw", "ex", "trusted")

    def __init__(self, ex: Exchange, trusted: Forwarding, body_raw: bytes | None) -> None:
        self.ex = ex
        self.trusted = trusted
        self.body_raw = body_raw
        self._body: Any = _UNSET
        self._headers: dict[str, str] | None = None
        self._ip: Any = _UNSET

    def header(self, name: str) -> str | None:
        return header_value(self.ex.request_header_style, self.ex.request_headers, name)

    def ip(self) -> str | None:
        if self._ip is _UNSET:
            headers = header_dict(self.ex.request_header_style, self.ex.request_headers)
            lower = {k.lower(): v for k, v in headers.items()}
            self._ip = self.trusted.client_ip(self.ex.remote_addr, lower)
        ip: str | None = self._ip
        return ip

    def body(self) -> Any:
        """The JSON request body: read ahead before the app, else as captured so far."""
        if self._body is _UNSET:
            self._body = None
            raw = self.body_raw
            captured = self.ex.request_body
            if raw is None and captured is not None and not captured.truncated:
                raw = captured.value()
            if raw:
                try:
                    self._body = json.loads(raw)
                except (ValueError, RecursionError):
                    pass
        return self._body

    @property
    def has_body(self) -> bool:
        """Whether body conditions can be judged now (before the app: only if read ahead)."""
        return self.body_raw is not None or self.ex.request_body is not None


_UNSET: Any = object()

Getter = Callable[[View], Any]
_METHOD: Getter = operator.attrgetter("ex.method")
_PATH: Getter = operator.attrgetter("ex.path")


def _field(path: str) -> tuple[Getter | None, bool]:
    """(getter, needs_response) for a condition path; getter None for unknown paths."""
    if path == "request.verb":
        return _METHOD, False
    if path == "request.route":
        return _PATH, False
    if path in ("request.ip_address", "request.ip"):
        return View.ip, False
    if path == "response.status":
        return (
            lambda v: v.ex.status if v.ex.status is not None and v.ex.status > 0 else None
        ), True
    if path.startswith("request.headers.") and len(path) > 16:
        name = path[16:].lower()
        return (lambda v: v.header(name)), False
    if path.startswith("request.body.") and len(path) > 13:
        keys = path[13:].split(".")

        def body_field(v: View) -> Any:
            value = v.body()
            for key in keys:
                if not isinstance(value, dict):
                    return None
                value = value.get(key)
            return value

        return body_field, False
    return None, False


# Collector-supplied patterns run on the request thread (the event loop under ASGI) against
# client-controlled text, so each match is bounded: input cut at MAX_INPUT characters, the
# match abandoned after TIMEOUT seconds (treated as no match). A pattern that keeps timing out
# is switched off for the policy's lifetime and logged once. RE2 would be linear-time, but its
# Python bindings ship no wheels for musl Linux or for Windows on ARM; ``regex`` does, and its
# timeout bounds any pattern (measured: ~1.3 µs a match here, against 0.2 µs for ``re``).
TIMEOUT = 0.002
MAX_INPUT = 8192
MAX_PATTERN = 1024  # characters; longer ones are refused (and logged) at compile time
_PREPARE_TIMEOUT = 0.5
_GIVE_UP_AFTER = 3  # timeouts, when they are also over 1% of the pattern's matches


class Pattern:
    """A collector-supplied regex, matched in bounded time: ``pattern(text) -> bool``."""

    __slots__ = ("_test", "calls", "disabled", "groups", "source", "timeouts", "where")

    def __init__(self, source: str, where: str, *, anchored: bool) -> None:
        if len(source) > MAX_PATTERN:
            raise ValueError(f"over {MAX_PATTERN} characters")
        compiled = regex.compile(source)  # raises regex.error
        # The first match against a text as long as a long literal builds tables in more than
        # quadratic time, beyond the timeout's reach (1 s for 2,000 characters, 140 ms for
        # 1,000): do it here, on the worker, with the GIL released, not on a request.
        try:
            compiled.search("\x00" * (len(source) + 1), timeout=_PREPARE_TIMEOUT, concurrent=True)
        except TimeoutError:
            raise ValueError("too slow to prepare") from None
        self._test = compiled.match if anchored else compiled.search
        self.source = source
        self.groups: int = compiled.groups
        self.where = where
        self.calls = 0
        self.timeouts = 0
        self.disabled = False

    def __call__(self, text: str) -> bool:
        return self.decide(text) is True

    def decide(self, text: str) -> bool | None:
        """Whether ``text`` matches; None when that could not be told in time."""
        if self.disabled:
            return None
        self.calls += 1
        try:
            return self._test(text[:MAX_INPUT], timeout=TIMEOUT) is not None
        except TimeoutError:
            self.timeouts += 1
            if self.timeouts >= _GIVE_UP_AFTER and self.timeouts * 100 >= self.calls:
                self.disabled = True
                bad_config(
                    self.where,
                    f"regex {self.source[:100]!r} takes over {TIMEOUT * 1000:g} ms on some "
                    "requests; switched off until the next config",
                )
            return None


class Condition:
    __slots__ = ("get", "needs_body", "needs_response", "test")

    def __init__(self, get: Getter, test: Pattern, needs_response: bool, body: bool) -> None:
        self.get = get
        self.test = test  # match (governance) or search (sampling)
        self.needs_response = needs_response
        self.needs_body = body


class ConditionGroup:
    """All conditions must match (``regex_config`` entry); an empty group never matches."""

    __slots__ = ("conditions", "needs_body", "needs_response", "route")

    def __init__(self, conditions: list[Condition], route: str | None) -> None:
        self.conditions = conditions
        self.route = route  # the pattern of its request.route condition, if it has one
        self.needs_response = any(c.needs_response for c in conditions)
        self.needs_body = any(c.needs_body for c in conditions)

    def matches(self, view: View) -> bool:
        for condition in self.conditions:
            value = condition.get(view)
            if value.__class__ is not str:
                if value is None or isinstance(value, dict | list):
                    return False
                value = json.dumps(value)  # numbers and booleans, as the JSON text
            if not condition.test(value):
                return False
        return bool(self.conditions)


def compile_group(raw: Any, where: str, anchored: bool) -> ConditionGroup | None:
    """One ``{"conditions": [...]}`` entry; None (logged once) when it can never match."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("conditions"), list):
        bad_config(where, "regex_config entries need a list of conditions")
        return None
    if not raw["conditions"]:
        bad_config(where, "a regex_config entry without conditions never matches")
        return None
    conditions = []
    route = None
    for item in raw["conditions"]:
        if not isinstance(item, Mapping) or not isinstance(item.get("path"), str):
            bad_config(where, f"condition {item!r} needs a path and a value")
            return None
        path, value = item["path"], item.get("value")
        getter, needs_response = _field(path)
        if getter is None:
            bad_config(where, f"unknown condition path {path!r}; it never matches")
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            bad_config(where, f"condition on {path} has no usable value {value!r}")
            return None
        try:
            pattern = Pattern(str(value), where, anchored=anchored)
        except (regex.error, RecursionError, OverflowError, ValueError) as exc:
            shown = str(value)[:100]
            bad_config(where, f"invalid regex {shown!r} for {path} ({exc}); it never matches")
            return None
        body = path.startswith("request.body.")
        conditions.append(Condition(getter, pattern, needs_response, body))
        if path == "request.route" and pattern.groups == 0:
            route = pattern.source
    return ConditionGroup(conditions, route)


class RouteFilter:
    """One regex over the route patterns of many condition groups. Most requests match none
    of the rules; one C-level scan then rules out every group that has a route condition,
    instead of a Python call per group."""

    def __init__(self, groups: list[ConditionGroup], anchored: bool) -> None:
        patterns = sorted({g.route for g in groups if g.route is not None})
        self.tests: list[Pattern] = []
        if len(patterns) < 3:
            return
        # As few regexes as the pattern length bound allows: many rules need the filter most.
        chunks: list[list[str]] = [[]]
        size = 0
        for pattern in patterns:
            length = len(pattern) + 5  # "(?:" ")" "|"
            if chunks[-1] and size + length > MAX_PATTERN:
                chunks.append([])
                size = 0
            chunks[-1].append(pattern)
            size += length
        try:
            self.tests = [
                Pattern("|".join(f"(?:{p})" for p in chunk), "route filter", anchored=anchored)
                for chunk in chunks
            ]
        except (regex.error, RecursionError, OverflowError, ValueError):
            self.tests = []  # e.g. inline flags that are only valid at a pattern's start

    def excludes(self, path: str) -> bool:
        """True when no group with a route condition can match this path (when the filter
        cannot tell in time, the groups decide one by one)."""
        for test in self.tests:
            if test.decide(path) is not False:
                return False
        return bool(self.tests)


def bad_config(where: str, why: str) -> None:
    log_once(
        f"policy:{where}:{why}",
        logging.WARNING,
        "moesif-agent: %s: %s (skipped; logged once)",
        where,
        why,
    )
