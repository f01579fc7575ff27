"""What the collector's config and rules decide for one request (runs on the request thread).

A ``Policy`` is immutable: the worker compiles a new one from ``/v1/config`` and ``/v1/rules``
and swaps it in with one assignment (``Agent.policy``), so a request always sees one
consistent version without locks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._exchange import Exchange


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


class Policy:
    """The default policy: keep every event, no rules."""

    needs_identity = False  # governance rules that need the user/company before the app

    def begin(self, ex: Exchange) -> Plan | None:
        return None

    def keep(self, ex: Exchange) -> bool:
        return True


DEFAULT_POLICY = Policy()
