"""Fail-open helpers: the agent's own errors are counted and logged once, never raised into
the host app."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger("moesif_agent")

_logged: set[str] = set()
_logged_lock = threading.Lock()

# Tests set this to True (see tests/conftest.py) so a swallowed internal error fails the suite.
reraise = False


def log_once(key: str, level: int, message: str, *args: Any, exc_info: bool = False) -> None:
    """Log ``message`` the first time ``key`` is seen in this process, then stay quiet."""
    with _logged_lock:
        if key in _logged:
            return
        _logged.add(key)
    logger.log(level, message, *args, exc_info=exc_info)


def after_fork_in_child() -> None:
    global _logged_lock
    _logged_lock = threading.Lock()


def reset_log_once() -> None:
    """Forget which messages were logged (for tests)."""
    with _logged_lock:
        _logged.clear()


@contextmanager
def guard(step: str, on_error: Callable[[BaseException], None] | None = None) -> Iterator[None]:
    """Run one agent step on the request path; an exception in it is logged once and dropped."""
    try:
        yield
    except Exception as exc:
        if on_error is not None:
            on_error(exc)
        internal_error(step)


def internal_error(step: str) -> None:
    """Call from an ``except Exception`` block on the request path: logs once (with the
    traceback) and lets the request go on; re-raises under test (see ``reraise``)."""
    log_once(
        "internal:" + step,
        logging.ERROR,
        "moesif-agent: internal error in %s (the request is not affected; "
        "this message is logged once)",
        step,
        exc_info=True,
    )
    if reraise:
        raise


def callback_failed(name: str, exc: BaseException) -> None:
    """Report a user callback that raised: logged once per callback, the request goes on."""
    log_once(
        "callback:" + name,
        logging.ERROR,
        "moesif-agent: the %s callback raised %s: %s (ignored; logged once)",
        name,
        type(exc).__name__,
        exc,
        exc_info=True,
    )
