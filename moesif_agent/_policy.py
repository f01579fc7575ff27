"""What the collector's config and rules decide for one request.

``compile_policy`` runs on the worker thread: it turns ``/v1/config`` (dynamic sampling) and
``/v1/rules`` (governance) into an immutable ``Policy``, skipping and logging once anything
malformed. The agent swaps the new policy in with one assignment, so the request thread always
sees one consistent version without locks, and evaluating it (``begin``, ``sample_rate``) never
raises into a request.
"""

from __future__ import annotations

import json
import logging
import operator
import re
import zlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._capture import TrustedProxies, client_ip, header_dict, header_value
from ._guard import log_once

if TYPE_CHECKING:
    from ._exchange import Exchange

logger = logging.getLogger(__name__)

UNKNOWN = "UNKNOWN"
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


class Block:
    """The response a blocking governance rule sends instead of calling the app."""

    __slots__ = ("body", "headers", "rule_id", "status")

    def __init__(
        self, status: int, headers: list[tuple[str, str]], body: bytes, rule_id: str
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.rule_id = rule_id


class Plan:
    """How an adapter handles one request; ``None`` from ``Agent.begin`` means the default
    (capture bodies, call the app, add no headers)."""

    __slots__ = ("block", "capture", "headers")

    def __init__(
        self,
        *,
        capture: bool = True,
        block: Block | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.capture = capture
        self.block = block
        self.headers = headers or []


# Conditions -----------------------------------------------------------------------------------


class View:
    """What conditions look at: one request (and, at the end, its response), read lazily."""

    __slots__ = ("_body", "_headers", "_ip", "body_raw", "ex", "trusted")

    def __init__(self, ex: Exchange, trusted: TrustedProxies, body_raw: bytes | None) -> None:
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
            self._ip = client_ip(self.ex.remote_addr, lower, self.trusted)
        ip: str | None = self._ip
        return ip

    def body(self) -> Any:
        if self._body is _UNSET:
            self._body = None
            if self.body_raw:
                try:
                    self._body = json.loads(self.body_raw)
                except (ValueError, RecursionError):
                    pass
        return self._body


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


class Condition:
    __slots__ = ("get", "needs_body", "needs_response", "test")

    def __init__(
        self, get: Getter, test: Callable[[str], Any], needs_response: bool, body: bool
    ) -> None:
        self.get = get
        self.test = test  # the compiled regex's match (governance) or search (sampling)
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
            if condition.test(value) is None:
                return False
        return bool(self.conditions)


def _compile_group(raw: Any, where: str, anchored: bool) -> ConditionGroup | None:
    """One ``{"conditions": [...]}`` entry; None (logged once) when it can never match."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("conditions"), list):
        _bad(where, "regex_config entries need a list of conditions")
        return None
    if not raw["conditions"]:
        _bad(where, "a regex_config entry without conditions never matches")
        return None
    conditions = []
    route = None
    for item in raw["conditions"]:
        if not isinstance(item, Mapping) or not isinstance(item.get("path"), str):
            _bad(where, f"condition {item!r} needs a path and a value")
            return None
        path, value = item["path"], item.get("value")
        getter, needs_response = _field(path)
        if getter is None:
            _bad(where, f"unknown condition path {path!r}; it never matches")
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            _bad(where, f"condition on {path} has no usable value {value!r}")
            return None
        try:
            regex = re.compile(str(value))
        except re.error as exc:
            _bad(where, f"invalid regex {value!r} for {path} ({exc}); it never matches")
            return None
        test = regex.match if anchored else regex.search
        conditions.append(Condition(getter, test, needs_response, path.startswith("request.body.")))
        if path == "request.route" and regex.groups == 0:
            route = regex.pattern
    return ConditionGroup(conditions, route)


class RouteFilter:
    """One regex over the route patterns of many condition groups. Most requests match none
    of the rules; one C-level scan then rules out every group that has a route condition,
    instead of a Python call per group."""

    def __init__(self, groups: list[ConditionGroup], anchored: bool) -> None:
        patterns = sorted({g.route for g in groups if g.route is not None})
        self.test: Callable[[str], Any] | None = None
        if len(patterns) < 3:
            return
        try:
            combined = re.compile("|".join(f"(?:{p})" for p in patterns))
        except re.error:  # e.g. inline flags that are only valid at a pattern's start
            return
        self.test = combined.match if anchored else combined.search

    def excludes(self, path: str) -> bool:
        """True when no group with a route condition can match this path."""
        return self.test is not None and self.test(path) is None


def _bad(where: str, why: str) -> None:
    log_once(
        f"policy:{where}:{why}",
        logging.WARNING,
        "moesif-agent: %s: %s (skipped; logged once)",
        where,
        why,
    )


# Sampling -------------------------------------------------------------------------------------


def _rate(value: Any, where: str) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        _bad(where, f"sample rate must be a number from 0 to 100, got {value!r}")
        return None
    return float(value)


def _rate_map(raw: Any, where: str) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        _bad(where, "must be an object of id -> rate")
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
            _bad("config regex_config", "must be a list")
            raw = []
        for index, entry in enumerate(raw):
            where = f"config regex_config[{index}]"
            group = _compile_group(entry, where, anchored=False)
            rate = _rate(entry.get("sample_rate") if isinstance(entry, Mapping) else None, where)
            # An entry that cannot match is kept as None so it never matches, in place.
            self.regex.append((group if rate is not None else None, rate or 0.0))
        self.trivial = self.default >= 100 and not (self.regex or self.users or self.companies)
        self.needs_identity = bool(self.users or self.companies)
        self.filter = RouteFilter([g for g, _ in self.regex if g is not None], anchored=False)

    def _candidates(self, view: View) -> list[tuple[ConditionGroup | None, float]]:
        if self.filter.excludes(view.ex.path):
            return [(g, r) for g, r in self.regex if g is not None and g.route is None]
        return self.regex

    def early_rate(self, view: View) -> float | None:
        """The rate when it can be known before the app runs, else None."""
        for group, rate in self._candidates(view):
            if group is None:
                continue
            if group.needs_response:
                return None
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


# Governance -----------------------------------------------------------------------------------


class Rule:
    __slots__ = (
        "block",
        "body",
        "body_template",
        "filtered",
        "groups",
        "headers",
        "id",
        "kind",
        "not_matching",
        "status",
        "unidentified",
    )

    def __init__(self, raw: Mapping[str, Any], where: str) -> None:
        rule_id = raw.get("_id")
        if not isinstance(rule_id, str) or not rule_id:
            raise ValueError("a rule needs a string _id")
        self.id = rule_id
        kind = raw.get("type")
        if kind not in ("regex", "user", "company"):
            raise ValueError(f"unknown rule type {kind!r}")
        self.kind = kind
        self.block = raw.get("block") is True
        self.not_matching = raw.get("applied_to") == "not_matching"
        self.unidentified = raw.get("applied_to_unidentified") is True
        groups = raw.get("regex_config") or []
        if not isinstance(groups, list):
            raise ValueError("regex_config must be a list")
        self.groups: list[ConditionGroup] = []
        for index, entry in enumerate(groups):
            group = _compile_group(entry, f"{where} regex_config[{index}]", anchored=True)
            if group is None:
                raise ValueError(f"regex_config[{index}] cannot be evaluated")
            self.groups.append(group)
        # Every group needs a route match: a RouteFilter miss rules this rule out.
        self.filtered = bool(self.groups) and all(g.route is not None for g in self.groups)
        response = raw.get("response") or {}
        if not isinstance(response, Mapping):
            raise ValueError("response must be an object")
        status = response.get("status", 200 if not self.block else None)
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            if self.block:
                raise ValueError(f"response.status must be an HTTP status, got {status!r}")
            status = 200
        self.status = status
        headers = response.get("headers") or {}
        if not isinstance(headers, Mapping):
            raise ValueError("response.headers must be an object")
        self.headers = [
            (str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in headers.items()
        ]
        if not any(k.lower() == "content-type" for k, _ in self.headers):
            text = isinstance(response.get("body"), str)
            self.headers.append(
                ("Content-Type", "text/plain; charset=utf-8" if text else "application/json")
            )
        self.body_template = response.get("body")
        # Bodies without placeholders are encoded once, here.
        self.body: bytes | None = None
        if not _has_placeholder(self.body_template):
            self.body = _encode_body(self.body_template)

    def matches(self, view: View) -> bool:
        """No regex_config means every request; otherwise any one group (OR of ANDs)."""
        for group in self.groups:
            if group.matches(view):
                return True
        return not self.groups

    def response(self, values: Mapping[str, Any]) -> tuple[list[tuple[str, str]], bytes]:
        headers = [(k, _substitute(v, values)) for k, v in self.headers]
        if self.body is not None:
            return headers, self.body
        return headers, _encode_body(_substitute(self.body_template, values))

    @property
    def needs_body(self) -> bool:
        return any(group.needs_body for group in self.groups)


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return _PLACEHOLDER.search(value) is not None
    if isinstance(value, dict):
        return any(_has_placeholder(k) or _has_placeholder(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_placeholder(v) for v in value)
    return False


def _substitute(value: Any, values: Mapping[str, Any]) -> Any:
    """``{{name}}`` -> the entry's value (UNKNOWN when missing), in strings at any depth."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            found = values.get(match.group(1))
            return UNKNOWN if found is None else str(found)

        return _PLACEHOLDER.sub(replace, value)
    if isinstance(value, dict):
        return {_substitute(k, values): _substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    return value


def _encode_body(body: Any) -> bytes:
    """JSON for objects, lists and numbers; a string body is sent as its text."""
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, separators=(",", ":"), default=str).encode("utf-8")


def _entries(raw: Any, where: str) -> dict[str, list[tuple[str, Mapping[str, Any]]]]:
    """config user_rules / company_rules: id -> [(rule id, values)]."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        _bad(where, "must be an object of id -> list of {rules, values}")
        return {}
    result: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for key, items in raw.items():
        if isinstance(items, Mapping):
            items = [items]
        if not isinstance(items, list):
            _bad(f"{where}[{key!r}]", "must be a list of {rules, values}")
            continue
        entries = []
        for item in items:
            if not isinstance(item, Mapping) or not isinstance(item.get("rules"), str):
                _bad(f"{where}[{key!r}]", f"entry {item!r} needs a rule id in 'rules'")
                continue
            values = item.get("values")
            entries.append((item["rules"], values if isinstance(values, Mapping) else {}))
        result[str(key)] = entries
    return result


class Governance:
    """``/v1/rules`` plus the cohorts in ``/v1/config`` (user_rules, company_rules)."""

    def __init__(self, rules: Any, config: Mapping[str, Any]) -> None:
        self.skipped = 0
        self.regex: list[Rule] = []
        self.by_kind: dict[str, dict[str, Rule]] = {"user": {}, "company": {}}
        if not isinstance(rules, list):
            if rules is not None:
                _bad("rules", "must be a list of rules")
            rules = []
        for index, raw in enumerate(rules):
            where = f"rule {raw.get('_id', index) if isinstance(raw, Mapping) else index!r}"
            try:
                if not isinstance(raw, Mapping):
                    raise ValueError("a rule must be an object")
                rule = Rule(raw, where)
            except ValueError as exc:
                self.skipped += 1
                _bad(where, str(exc))
                continue
            if rule.kind == "regex":
                self.regex.append(rule)
            else:
                self.by_kind[rule.kind][rule.id] = rule
        self.cohorts = {
            kind: self._known(kind, _entries(config.get(f"{kind}_rules"), f"config {kind}_rules"))
            for kind in ("user", "company")
        }
        self.not_matching = {
            kind: [r for r in rules.values() if r.not_matching]
            for kind, rules in self.by_kind.items()
        }
        self.unidentified = {
            kind: [r for r in rules.values() if r.unidentified]
            for kind, rules in self.by_kind.items()
        }
        every = [*self.regex, *self.by_kind["user"].values(), *self.by_kind["company"].values()]
        self.filter = RouteFilter(
            [group for rule in every if rule.filtered for group in rule.groups], anchored=True
        )
        self.empty = not every
        self.needs_identity = bool(self.by_kind["user"] or self.by_kind["company"])
        self.needs_body = any(rule.needs_body for rule in every)

    def _known(
        self, kind: str, cohorts: dict[str, list[tuple[str, Mapping[str, Any]]]]
    ) -> dict[str, list[tuple[Rule, Mapping[str, Any]]]]:
        """Cohort entries with their rules resolved; entries for unknown rules are dropped."""
        rules = self.by_kind[kind]
        known: dict[str, list[tuple[Rule, Mapping[str, Any]]]] = {}
        unknown = []
        for entity, entries in cohorts.items():
            resolved = []
            for rule_id, values in entries:
                rule = rules.get(rule_id)
                if rule is None:
                    unknown.append(f"{entity!r} -> {rule_id!r}")
                else:
                    resolved.append((rule, values))
            known[entity] = resolved
        if unknown:
            _bad(
                f"config {kind}_rules",
                f"{len(unknown)} entries name no {kind} rule of /v1/rules (first: {unknown[0]})",
            )
        return known

    def evaluate(self, view: View, user_id: str | None, company_id: str | None) -> Plan | None:
        headers: dict[str, tuple[str, str]] = {}
        block: Block | None = None
        block_content_type = "application/json"

        def apply(rule: Rule, values: Mapping[str, Any]) -> None:
            nonlocal block, block_content_type
            rule_headers, body = rule.response(values)
            for name, value in rule_headers:
                headers[name.lower()] = (name, value)
            if rule.block:
                block = Block(rule.status, [], body, rule.id)
                block_content_type = next(v for k, v in rule_headers if k.lower() == "content-type")

        # When no route pattern matches, rules that need one are skipped without evaluation.
        out = self.filter.excludes(view.ex.path)
        for rule in self.regex:
            if not (out and rule.filtered) and rule.matches(view):
                apply(rule, {})
        for kind, entity in (("company", company_id), ("user", user_id)):
            if not self.by_kind[kind]:
                continue
            if entity is None:
                for rule in self.unidentified[kind]:
                    if not (out and rule.filtered) and rule.matches(view):
                        apply(rule, {})
                continue
            entries = self.cohorts[kind].get(entity, ())
            for rule, values in entries:
                if not rule.not_matching and not (out and rule.filtered) and rule.matches(view):
                    apply(rule, values)
            for rule in self.not_matching[kind]:
                if out and rule.filtered:
                    continue
                if rule.matches(view) and not any(rule is r for r, _ in entries):
                    apply(rule, {})
        if block is None and not headers:
            return None
        if block is not None:
            # The blocking rule's own Content-Type wins over other rules' for its body.
            content_type = block_content_type
            merged = [h for k, h in headers.items() if k not in ("content-type", "content-length")]
            block.headers = [
                *merged,
                ("Content-Type", content_type),
                ("Content-Length", str(len(block.body))),
            ]
            return Plan(block=block, headers=block.headers)
        merged = [h for k, h in headers.items() if k not in ("content-type", "content-length")]
        return Plan(headers=merged)


# The policy ------------------------------------------------------------------------------------


class Policy:
    """Sampling and governance for one version of the collector's config and rules."""

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        rules: Any = None,
        *,
        trusted: TrustedProxies | None = None,
        etag: str | None = None,
    ) -> None:
        config = config or {}
        self.etag = etag
        self.trusted = trusted or TrustedProxies(())
        self.sampling = Sampling(config)
        self.governance = Governance(rules, config)
        self.needs_identity = self.governance.needs_identity  # before the app, for governance
        self.needs_body = self.governance.needs_body
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


def keeps(transaction_id: str, rate: float) -> bool:
    """The deterministic keep decision: the same transaction id always gets the same answer."""
    if rate >= 100:
        return True
    if rate <= 0:
        return False
    return _bucket(transaction_id) < rate * 100


def _bucket(transaction_id: str) -> int:
    return zlib.crc32(transaction_id.encode("utf-8", "replace")) % 10_000


DEFAULT_POLICY = Policy()
