"""ISO 8601 times <-> integer microseconds since the epoch (UTC), the form the store indexes.

Python 3.10's ``datetime.fromisoformat`` rejects ``Z`` and most fraction lengths, and the seed
examples carry no offset at all (``2024-02-06T04:45:42.914``), so the collector parses itself:
a time without an offset is UTC.
"""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta, timezone

_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)"
    r"(?:[Tt ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?)?"
    r"\s*(?:([Zz])|([+-])(\d\d):?(\d\d))?"
)
# What agents send: 2024-02-06T04:45:42.914Z, or without Z as in the spec's examples.
_COMMON = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z?")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_ORDINAL = _EPOCH.toordinal()
_US = timedelta(microseconds=1)
_MINUTES_CACHE_SIZE = 4096
_minutes: dict[str, int] = {}


def _minute(prefix: str) -> int | None:
    """Microseconds at the start of the minute ``YYYY-MM-DDTHH:MM``, or None if invalid."""
    try:
        days = date(int(prefix[:4]), int(prefix[5:7]), int(prefix[8:10])).toordinal()
    except ValueError:
        return None
    hours, minutes = int(prefix[11:13]), int(prefix[14:16])
    if hours > 23 or minutes > 59:
        return None
    return ((days - _EPOCH_ORDINAL) * 1440 + hours * 60 + minutes) * 60_000_000


def parse_iso(value: str) -> int | None:
    """Microseconds since the epoch, or None when ``value`` is not an ISO 8601 date-time."""
    if _COMMON.fullmatch(value) is None:
        return _parse_general(value)
    # Events of one batch share their minutes: cache them, and parse only seconds and fraction.
    start = _minutes.get(value[:16])
    if start is None:
        start = _minute(value[:16])
        if start is None:
            return None
        if len(_minutes) >= _MINUTES_CACHE_SIZE:
            _minutes.clear()
        _minutes[value[:16]] = start
    seconds = int(value[17:19])
    if seconds > 59:
        return None
    fraction = value[20:].rstrip("Z")
    micros = int(fraction.ljust(6, "0")) if fraction else 0
    return start + seconds * 1_000_000 + micros


def _parse_general(value: str) -> int | None:
    match = _ISO.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micros,
            tzinfo=timezone.utc,
        )
    except ValueError:
        return None
    result = (moment - _EPOCH) // _US
    if sign is not None:
        offset = (int(off_h) * 60 + int(off_m)) * 60_000_000
        result = result - offset if sign == "+" else result + offset
    return result


def now_micros() -> int:
    return time.time_ns() // 1000


def format_iso(micros: int) -> str:
    """``2024-02-06T04:45:42.914Z``: milliseconds, as agents send times (microseconds when
    the time has them)."""
    seconds, fraction = divmod(micros, 1_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if fraction % 1000:
        return f"{stamp}.{fraction:06d}Z"
    return f"{stamp}.{fraction // 1000:03d}Z"
