"""Numbers and regular expressions read from untrusted text, refused with a reason instead
of an exception the caller did not expect.

``str.isdigit()`` is true of ``²`` and ``٤``, which ``int()`` refuses or reads, and a number
of any length does not fit SQLite's 64-bit integers (OverflowError). ``re.compile`` raises
OverflowError for ``a{99999999999}`` and RecursionError for deeply nested groups, not only
``re.error``.
"""

from __future__ import annotations

import re

_INTEGER = re.compile(r"-?[0-9]{1,18}")
MAX_INT = 10**18 - 1  # the most 18 digits can say: within SQLite's 64-bit integers


def parse_int(text: str, low: int, high: int) -> int | None:
    """``text`` as an integer from ``low`` to ``high``, or None when it is not one: an
    optional minus sign and 1 to 18 ASCII digits, nothing around them."""
    if _INTEGER.fullmatch(text) is None:
        return None
    number = int(text)
    return number if low <= number <= high else None


class BadPattern(ValueError):
    """A regular expression that cannot be compiled; the message says why, as a predicate:
    "is not a valid regular expression (...)"."""


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled, or BadPattern for every way ``re.compile`` refuses it."""
    try:
        return re.compile(pattern)
    except (re.error, OverflowError) as exc:  # OverflowError: a{99999999999}
        reason = str(exc)
    except RecursionError:  # ((((...)))) hundreds deep
        reason = "groups nested too deeply"
    raise BadPattern(f"is not a valid regular expression ({reason})")
