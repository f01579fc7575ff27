"""What a ``/v1/config`` or ``/v1/rules`` document must look like for agents to use it.

The agent skips what it cannot use (a rule without an ``_id``, a sampling rate of "50"),
silently from the user's point of view: the collector checks the files it serves instead,
and names the field that is wrong. Fields the spec does not describe are accepted, as the
protocol grows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._inputs import BadPattern, compile_pattern

_RULE_TYPES = ("regex", "user", "company")
_APPLIED_TO = ("matching", "not_matching")


class DocumentError(ValueError):
    """A field of a config or rules document is wrong: ``field`` is its JSON path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    names = {dict: "an object", list: "an array", str: "a string", int: "an integer"}
    return names.get(type(value), "null" if value is None else f"a {type(value).__name__}")


def _expect(value: object, kind: type, field: str, wanted: str) -> None:
    if type(value) is not kind:
        raise DocumentError(field, f"must be {wanted}, not {_kind(value)}")


def _rate(value: object, field: str) -> None:
    if type(value) is not int or not 0 <= value <= 100:
        shown = value if type(value) is int else _kind(value)
        raise DocumentError(field, f"must be an integer from 0 to 100 (a percentage), not {shown}")


def _rates(value: object, field: str) -> None:
    _expect(value, dict, field, "an object of id -> sample rate")
    assert isinstance(value, dict)
    for key, rate in value.items():
        _rate(rate, f"{field}.{key}")


def _groups(value: object, field: str, sampling: bool) -> None:
    """``regex_config``: a list of {conditions: [{path, value (a regex)}], sample_rate}."""
    _expect(value, list, field, "an array of {conditions, ...}")
    assert isinstance(value, list)
    for index, group in enumerate(value):
        where = f"{field}[{index}]"
        _expect(group, dict, where, "an object with conditions")
        conditions = group.get("conditions")
        _expect(conditions, list, f"{where}.conditions", "an array of {path, value}")
        for number, condition in enumerate(conditions):
            at = f"{where}.conditions[{number}]"
            _expect(condition, dict, at, "an object {path, value}")
            _expect(condition.get("path"), str, f"{at}.path", 'a string ("request.route")')
            pattern = condition.get("value")
            _expect(pattern, str, f"{at}.value", "a string (a regular expression)")
            try:
                compile_pattern(pattern)
            except BadPattern as exc:
                raise DocumentError(f"{at}.value", str(exc)) from None
        if sampling or "sample_rate" in group:
            _rate(group.get("sample_rate"), f"{where}.sample_rate")


def _cohorts(value: object, field: str) -> None:
    """``user_rules`` / ``company_rules``: id -> [{rules: rule id, values: {...}}]."""
    _expect(value, dict, field, "an object of id -> array of {rules, values}")
    assert isinstance(value, dict)
    for key, entries in value.items():
        entries = [entries] if type(entries) is dict else entries
        _expect(entries, list, f"{field}.{key}", "an array of {rules, values}")
        for index, entry in enumerate(entries):
            at = f"{field}.{key}[{index}]"
            _expect(entry, dict, at, "an object {rules, values}")
            _expect(entry.get("rules"), str, f"{at}.rules", "a rule _id (a string)")
            if entry.get("values") is not None:
                _expect(entry["values"], dict, f"{at}.values", "an object")


def check_config(document: dict[str, Any]) -> None:
    """Raises DocumentError naming the first wrong field of a ``/v1/config`` document."""
    checks: dict[str, Callable[[object, str], None]] = {
        "sample_rate": _rate,
        "user_sample_rate": _rates,
        "company_sample_rate": _rates,
        "regex_config": lambda value, field: _groups(value, field, sampling=True),
        "user_rules": _cohorts,
        "company_rules": _cohorts,
    }
    for name, check in checks.items():
        if document.get(name) is not None:
            check(document[name], name)


def _response(rule: dict[str, Any], field: str) -> None:
    response = rule.get("response")
    if response is None:
        if rule.get("block") is True:
            raise DocumentError(field, "is required when block is true ({status, body})")
        return
    _expect(response, dict, field, "an object {status, headers, body}")
    status = response.get("status")
    if status is not None or rule.get("block") is True:
        if type(status) is not int or not 100 <= status <= 599:
            shown = status if type(status) is int else _kind(status)
            raise DocumentError(f"{field}.status", f"must be an HTTP status (100-599), not {shown}")
    if response.get("headers") is not None:
        _expect(response["headers"], dict, f"{field}.headers", "an object of name -> value")


def check_rules(document: list[Any]) -> None:
    """Raises DocumentError naming the first wrong field of a ``/v1/rules`` document."""
    seen: set[str] = set()
    for index, rule in enumerate(document):
        at = f"[{index}]"
        _expect(rule, dict, at, "an object (a governance rule)")
        rule_id = rule.get("_id")
        if type(rule_id) is not str or not rule_id:
            raise DocumentError(f"{at}._id", f"must be a non-empty string, not {_kind(rule_id)}")
        if rule_id in seen:
            raise DocumentError(f"{at}._id", f"{rule_id!r} is the _id of an earlier rule too")
        seen.add(rule_id)
        if rule.get("type") not in _RULE_TYPES:
            raise DocumentError(
                f"{at}.type", f"must be one of {', '.join(_RULE_TYPES)}, not {rule.get('type')!r}"
            )
        for flag in ("block", "applied_to_unidentified"):
            if rule.get(flag) is not None:
                _expect(rule[flag], bool, f"{at}.{flag}", "true or false")
        if rule.get("applied_to") not in (None, *_APPLIED_TO):
            raise DocumentError(
                f"{at}.applied_to", f"must be matching or not_matching, not {rule['applied_to']!r}"
            )
        if rule.get("regex_config") is not None:
            _groups(rule["regex_config"], f"{at}.regex_config", sampling=False)
        _response(rule, f"{at}.response")
