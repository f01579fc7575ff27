"""``moesif-agent check``: where this application's events would go, and whether they would be
taken there.

The options are read exactly as the agent reads them (flags here, then ``MOESIF_*``
environment variables, then the defaults); the collector is then asked, with this application
id, for its sampling config (``GET /v1/config``) and governance rules (``GET /v1/rules``): the
same application-id check guards those and the event endpoints, so a 2xx means events are
accepted. The answers are then read by the agent's own code (the same parsing, the same
``Policy``): the output says what the agent would use, and what it would skip and why. Nothing
is sent or stored. Exit status 0 when all is well, 1 with a one-line reason when events would
not be delivered, 2 when the options themselves are wrong.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ._client import CollectorClient, Outcome
from ._health import hint, short_id
from ._options import Options
from ._policy import Policy
from ._remote import _parse

EVENTS_PATH = "/v1/events/batch"
_SHOWN = 10  # skipped config entries listed one a line; the others are counted
_TEXT_MAX = 200  # characters of collector-supplied text quoted in one line


class CheckFailed(Exception):
    """The one-line reason events would not be delivered."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moesif-agent check",
        description="Say where this application's events would go (from the same options and "
        "MOESIF_* environment variables as the agent) and whether that collector accepts "
        "them: exit 0 when it does, 1 with the reason when it does not.",
    )
    parser.add_argument(
        "--application-id", help="the application id (default: MOESIF_APPLICATION_ID)"
    )
    parser.add_argument(
        "--base-uri",
        help="the collector (default: MOESIF_BASE_URI, else https://api.moesif.net)",
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for each answer (5)"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    explicit = {
        name: value
        for name, value in (("application_id", args.application_id), ("base_uri", args.base_uri))
        if value is not None
    }
    try:
        options = Options(**explicit)
    except ValueError as exc:
        sys.stderr.write(f"moesif-agent check: {exc}\n")
        return 2
    out = sys.stdout
    out.write("moesif-agent check\n")
    _line(
        "application id",
        f"{_short(options.application_id)}  ({_source('application_id', explicit)})",
    )
    _line("collector", f"{options.base_uri}  ({_source('base_uri', explicit)})")
    try:
        verdict = _check(options, args.timeout, _source("application_id", explicit))
    except CheckFailed as exc:
        sys.stderr.write(f"moesif-agent check: {exc}\n")
        return 1
    out.write(f"ok: {verdict}\n")
    return 0


def _check(options: Options, timeout: float, id_source: str) -> str:
    if not options.enabled:
        raise CheckFailed(
            f"the agent is disabled ({_source('enabled', {})}: enabled=False): nothing is recorded"
        )
    if options.dry_run:
        _line("events", "kept in memory (dry_run=True): nothing is sent")
        return "dry run: events are kept in memory for agent.dry_run_events"
    _line("events go to", options.base_uri + EVENTS_PATH)
    timeouts = dataclasses.replace(options, connect_timeout=timeout, request_timeout=timeout)
    client = CollectorClient(timeouts)
    try:
        config = _fetch(client, "/v1/config", options, id_source)
        _line("app id check", f"accepted (GET /v1/config: {config.status})")
        rules = _fetch(client, "/v1/rules", options, id_source)
    finally:
        client.close()
    # What the agent would make of the answers: the same parsing and the same Policy, its
    # warnings about what it skips shown here, one a line, instead of logged.
    with _agent_warnings() as warnings:
        config_document = _document(config, "/v1/config", dict, options)
        rules_document = _document(rules, "/v1/rules", list, options)
        policy = Policy(config_document, rules_document)
    sampling = policy.sampling
    usable = sum(1 for group, _ in sampling.regex if group is not None)
    _line(
        "config",
        f"sample rate {sampling.default:g}%, {_count(usable, 'sampling rule')}, "
        f"{_count(len(sampling.users), 'user rate')}, "
        f"{_count(len(sampling.companies), 'company rate')}",
    )
    governance = policy.governance
    kept = len(governance.regex) + sum(len(rules) for rules in governance.by_kind.values())
    skipped = governance.skipped
    _line(
        "rules",
        _count(kept, "governance rule")
        + (f" ({skipped} malformed, skipped by the agent)" if skipped else ""),
    )
    for warning in warnings[:_SHOWN]:
        _line("skipped", warning)
    if len(warnings) > _SHOWN:
        _line("skipped", f"… and {len(warnings) - _SHOWN} more")
    return f"events go to {options.base_uri} and it accepts this application id"


def _fetch(client: CollectorClient, path: str, options: Options, id_source: str) -> Outcome:
    outcome = client.get(path, retry=False)
    if outcome.ok:
        return outcome
    where = options.base_uri
    status = outcome.status
    if status is None:
        raise CheckFailed(
            f"cannot reach the collector at {where} ({outcome.error}): {hint(None, outcome.error)}"
        )
    if status == 404:
        raise CheckFailed(
            f"{where} does not serve {path} (HTTP 404): is MOESIF_BASE_URI the collector's "
            "address, not your app's?"
        )
    reason = f"the collector at {where} answered GET {path} with HTTP {status}"
    reason += _message(outcome.content)
    if status in (401, 403):
        raise CheckFailed(
            f"{reason}: {hint(status)} ({_short(options.application_id)}, {id_source})"
        )
    raise CheckFailed(reason)


def _document(outcome: Outcome, path: str, kind: type, options: Options) -> Any:
    document = _parse(outcome.content, path.rsplit("/", 1)[-1], kind)
    if document is None:
        raise CheckFailed(
            f"the collector at {options.base_uri} serves a {path} that is not a JSON "
            f"{'object' if kind is dict else 'array'}: the agent would keep its defaults"
        )
    return document


def _message(content: bytes) -> str:
    """The collector's own explanation, when its error body has one: `` (text)``, one line."""
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        return ""
    message = (body.get("message") or body.get("error")) if isinstance(body, dict) else None
    if not isinstance(message, str):
        return ""
    text = _one_line(message)
    return f" ({text})" if text else ""


def _one_line(text: str) -> str:
    """Collector-supplied text (it may hold anything) as part of one line of output."""
    text = " ".join(text.split())
    return text[:_TEXT_MAX] + "…" if len(text) > _TEXT_MAX else text


_LOGGED = re.compile(r"^moesif-agent: |\s*\((?:skipped; )?logged once\)$")


@contextmanager
def _agent_warnings() -> Iterator[list[str]]:
    """The agent's log lines while it reads the collector's answers (what it skips, and why),
    kept instead of logged: the check shows them on its own lines."""
    collected: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            collected.append(_one_line(_LOGGED.sub("", " ".join(record.getMessage().split()))))

    logger = logging.getLogger("moesif_agent")
    handler = Collect(logging.WARNING)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield collected
    finally:
        logger.propagate = propagate
        logger.removeHandler(handler)


def _source(name: str, explicit: dict[str, str]) -> str:
    if name in explicit:
        return "from --" + name.replace("_", "-")
    variable = "MOESIF_" + name.upper()
    return f"from {variable}" if os.environ.get(variable) else "default"


def _short(application_id: str) -> str:
    return short_id(application_id) if application_id else "(none)"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _line(label: str, text: str) -> None:
    sys.stdout.write(f"  {label:<15} {text}\n")
