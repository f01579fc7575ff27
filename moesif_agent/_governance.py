"""Governance from ``/v1/rules`` and the config's cohorts: which rules apply to a request,
the headers they add and the response a blocking one sends instead of the app's."""

from __future__ import annotations

import json
import re
import reprlib
from collections.abc import Mapping
from typing import Any

from ._conditions import ConditionGroup, RouteFilter, View, bad_config, compile_group

UNKNOWN = "UNKNOWN"
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
# Filling in a response body walks it recursively on the request thread, under the web
# framework's own stack: a deeper body is refused when the rule is compiled.
MAX_BODY_DEPTH = 64


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
            group = compile_group(entry, f"{where} regex_config[{index}]", anchored=True)
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
        self.headers = []
        for name, value in headers.items():
            header = header_field(str(name), value if isinstance(value, str) else json.dumps(value))
            if header is None:
                bad_config(where, f"header {name!r} cannot be sent in HTTP (dropped)")
            else:
                self.headers.append(header)
        if not any(k.lower() == "content-type" for k, _ in self.headers):
            text = isinstance(response.get("body"), str)
            self.headers.append(
                ("Content-Type", "text/plain; charset=utf-8" if text else "application/json")
            )
        self.body_template = response.get("body")
        if _too_deep(self.body_template, MAX_BODY_DEPTH):
            raise ValueError(f"response.body is nested over {MAX_BODY_DEPTH} levels deep")
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
        headers = []
        for name, value in self.headers:
            header = header_field(name, _substitute(value, values))
            if header is not None:
                headers.append(header)
        if self.body is not None:
            return headers, self.body
        return headers, _encode_body(_substitute(self.body_template, values))

    @property
    def needs_body(self) -> bool:
        return any(group.needs_body for group in self.groups)


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers that describe the connection or the message framing: the server's to set, and a
# wrong one breaks the response (WSGI forbids hop-by-hop headers outright).
_NOT_FOR_RULES = frozenset(
    "connection keep-alive proxy-connection transfer-encoding te trailer upgrade host "
    "status content-length".split()
)
_TYPOGRAPHIC = str.maketrans(
    {
        "\u2013": "-",
        "\u2014": "-",
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2026": "...",
    }
)


def header_field(name: str, value: str) -> tuple[str, str] | None:
    """(name, value) as every server can send it, or None when it cannot be sent: a name
    that is not a token, a value with CR, LF or NUL (header injection). Characters outside
    latin-1 become their ASCII look-alike or "?" (ASGI servers refuse them: a 500 for every
    request)."""
    if not _TOKEN.fullmatch(name) or any(c in value for c in "\r\n\x00"):
        return None
    if name.lower() in _NOT_FOR_RULES:
        return None
    if not value.isascii():
        value = value.translate(_TYPOGRAPHIC).encode("latin-1", "replace").decode("latin-1")
    return name, value.strip()


def _too_deep(value: Any, limit: int) -> bool:
    """Whether lists and objects in ``value`` nest over ``limit`` levels (without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


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
        bad_config(where, "must be an object of id -> list of {rules, values}")
        return {}
    result: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for key, items in raw.items():
        if isinstance(items, Mapping):
            items = [items]
        if not isinstance(items, list):
            bad_config(f"{where}[{key!r}]", "must be a list of {rules, values}")
            continue
        entries = []
        for item in items:
            if not isinstance(item, Mapping) or not isinstance(item.get("rules"), str):
                shown = reprlib.repr(item)  # bounded: the entry may be nested absurdly deep
                bad_config(f"{where}[{key!r}]", f"entry {shown} needs a rule id in 'rules'")
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
                bad_config("rules", "must be a list of rules")
            rules = []
        for index, raw in enumerate(rules):
            key = raw.get("_id", index) if isinstance(raw, Mapping) else index
            where = f"rule {key!r}" if isinstance(key, str | int) else f"rule {index!r}"
            try:
                if not isinstance(raw, Mapping):
                    raise ValueError("a rule must be an object")
                rule = Rule(raw, where)
            except (ValueError, RecursionError) as exc:
                # RecursionError: a part nested too deep to read (to print, to encode).
                self.skipped += 1
                why = str(exc) if isinstance(exc, ValueError) else "nested too deep to read"
                bad_config(where, why)
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
            bad_config(
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
