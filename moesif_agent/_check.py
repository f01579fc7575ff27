"""``moesif-agent check``: where this application's events would go, and whether they would be
taken there.

The options are read exactly as the agent reads them (flags here, then ``MOESIF_*``
environment variables, then the defaults); the collector is then asked, with this application
id, for its sampling config (``GET /v1/config``) and governance rules (``GET /v1/rules``): the
same application-id check guards those and the event endpoints, so a 2xx means events are
accepted. Nothing is sent or stored. Exit status 0 when all is well, 1 with a one-line reason
when events would not be delivered, 2 when the options themselves are wrong.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ._client import CollectorClient, Outcome
from ._options import Options
from ._policy import Policy

EVENTS_PATH = "/v1/events/batch"


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
        verdict = _check(options, args.timeout)
    except CheckFailed as exc:
        sys.stderr.write(f"moesif-agent check: {exc}\n")
        return 1
    out.write(f"ok: {verdict}\n")
    return 0


def _check(options: Options, timeout: float) -> str:
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
        config = _fetch(client, "/v1/config", options)
        _line("app id check", f"accepted (GET /v1/config: {config.status})")
        rules = _fetch(client, "/v1/rules", options)
    finally:
        client.close()
    config_document = _document(config, "/v1/config", dict, options)
    rules_document = _document(rules, "/v1/rules", list, options)
    policy = Policy(config_document, rules_document)
    sampling = policy.sampling
    _line(
        "config",
        f"sample rate {sampling.default:g}%, {_count(len(sampling.regex), 'sampling rule')}, "
        f"{_count(len(config_document.get('user_sample_rate') or {}), 'user rate')}, "
        f"{_count(len(config_document.get('company_sample_rate') or {}), 'company rate')}",
    )
    skipped = policy.governance.skipped
    _line(
        "rules",
        _count(len(rules_document), "governance rule")
        + (f" ({skipped} malformed, skipped by the agent)" if skipped else ""),
    )
    return f"events go to {options.base_uri} and it accepts this application id"


def _fetch(client: CollectorClient, path: str, options: Options) -> Outcome:
    outcome = client.get(path, retry=False)
    if outcome.ok:
        return outcome
    where = options.base_uri
    if outcome.status is None:
        raise CheckFailed(f"cannot reach the collector at {where} ({outcome.error})")
    detail = _message(outcome.content)
    if outcome.status in (401, 403):
        raise CheckFailed(
            f"the collector at {where} does not accept application id "
            f"{_short(options.application_id)} (GET {path}: HTTP {outcome.status}{detail}); "
            "check MOESIF_APPLICATION_ID"
        )
    if outcome.status == 404:
        raise CheckFailed(
            f"{where} does not serve {path} (HTTP 404): is MOESIF_BASE_URI the collector's "
            "address, not your app's?"
        )
    raise CheckFailed(
        f"the collector at {where} answered GET {path} with HTTP {outcome.status}{detail}"
    )


def _document(outcome: Outcome, path: str, kind: type, options: Options) -> Any:
    try:
        document = json.loads(outcome.content)
    except ValueError:
        document = None
    if not isinstance(document, kind):
        raise CheckFailed(
            f"the collector at {options.base_uri} serves a {path} that is not a JSON "
            f"{'object' if kind is dict else 'array'}: the agent would keep its defaults"
        )
    return document


def _message(content: bytes) -> str:
    """The collector's own explanation, when its error body has one."""
    try:
        body = json.loads(content)
    except ValueError:
        return ""
    message = body.get("message") or body.get("error") if isinstance(body, dict) else None
    return f": {message}" if isinstance(message, str) and message else ""


def _source(name: str, explicit: dict[str, str]) -> str:
    if name in explicit:
        return "from --" + name.replace("_", "-")
    variable = "MOESIF_" + name.upper()
    return f"from {variable}" if os.environ.get(variable) else "default"


def _short(application_id: str) -> str:
    """Enough of an application id to recognise it, not enough to use it."""
    if not application_id:
        return "(none)"
    return repr(application_id[:6] + ("…" if len(application_id) > 6 else ""))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _line(label: str, text: str) -> None:
    sys.stdout.write(f"  {label:<15} {text}\n")
