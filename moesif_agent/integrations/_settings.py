"""What a middleware reads once from its options (request thread at startup): the user's
per-request callbacks, wrapped, and the declarative skip rules, compiled."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._callbacks import wrap, wrap_async

if TYPE_CHECKING:
    from .._options import Options

# Paths of health checks and probes, skipped when skip_probe_paths=True (listed in the README).
PROBE_PATHS = (
    r"/(health|healthz|healthcheck|health-check|livez|readyz|ready|live|liveness|readiness"
    r"|ping|status|metrics)/?",
    r"/favicon\.ico",
    r"/robots\.txt",
)
CALLBACKS = ("skip", "identify_user", "identify_company", "get_session_token", "get_metadata")


class Callbacks:
    """The user's per-request callbacks, wrapped once: sync ones for WSGI stacks, awaitable
    ones for ASGI stacks. A wrapped callback never raises and returns a checked value."""

    __slots__ = CALLBACKS

    skip: Callable[..., Any] | None
    identify_user: Callable[..., Any] | None
    identify_company: Callable[..., Any] | None
    get_session_token: Callable[..., Any] | None
    get_metadata: Callable[..., Any] | None

    def __init__(self, options: Options, *, asynchronous: bool, outgoing: bool = False) -> None:
        wrapper: Callable[[str, Any], Any] = wrap_async if asynchronous else wrap
        suffix = "_outgoing" if outgoing else ""
        for name in CALLBACKS:
            setattr(self, name, wrapper(name + suffix, getattr(options, name + suffix)))


class SkipRules:
    """The declarative skips: ``skip_paths`` (regexes), ``skip_methods``, probe paths."""

    __slots__ = ("methods", "paths")

    def __init__(self, options: Options) -> None:
        paths = list(options.skip_paths)
        if options.skip_probe_paths:
            paths += [f"^{p}$" for p in PROBE_PATHS]
        self.paths = _searcher(paths) if paths else None
        self.methods = frozenset(m.upper() for m in options.skip_methods)

    def __call__(self, method: str, path: str) -> bool:
        return method in self.methods or (self.paths is not None and self.paths(path) is not None)


def _searcher(patterns: list[str]) -> Callable[[str], object]:
    """One search over all ``patterns``: a single regex when they can be joined, else each
    on its own (a global flag such as ``(?i)``, a group name used twice)."""
    try:
        return re.compile("|".join(f"(?:{p})" for p in patterns)).search
    except re.error:
        searches = [re.compile(p).search for p in patterns]  # each was checked by Options
        return lambda path: next((m for search in searches if (m := search(path))), None)
