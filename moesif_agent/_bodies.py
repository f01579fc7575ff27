"""A captured body as the wire carries it (worker thread): the privacy principle in one place.

A body leaves as structured JSON only after it parsed as strict JSON (an object or an array:
no NaN, no lone surrogates) and was masked. Anything else that is text (forms, multipart,
NDJSON, JSON-ish or latin-1 text, a body cut at ``max_body_size``) is masked as text by key
and sent as base64. Compressed bodies (gzip, deflate) are inflated up to the cap first, never
sent compressed; a body that cannot be inspected (an encoding we cannot inflate, binary data)
is replaced by a note that says why. Notes land in ``metadata._moesif.<request|response>_body``.
"""

from __future__ import annotations

import base64
import math
import re
import zlib
from collections.abc import Mapping
from typing import Any

import orjson

from ._exchange import Body
from ._masking import KeySet, Masker

MULTIPART = "multipart/"


class Encoded:
    """What became of one body: ``value`` for the wire (None: no body; JSON that was valid
    and needed no masking travels as an ``orjson.Fragment`` of the bytes as they came), its
    ``transfer_encoding``, and a note for metadata (None: nothing to say)."""

    __slots__ = ("note", "transfer_encoding", "value")

    def __init__(
        self, value: Any, transfer_encoding: str | None, note: dict[str, Any] | None = None
    ) -> None:
        self.value = value
        self.transfer_encoding = transfer_encoding
        self.note = note


def encode(
    body: Body,
    headers: Mapping[str, str],
    keys: KeySet,
    masker: Masker,
    *,
    limit: int,
    decoded: bool = False,
    splice: bool = True,
) -> Encoded | None:
    """``body`` as the wire carries it; ``headers`` are the message's, with lower-case names.
    ``decoded``: the body was already content-decoded (an HTTP client inflated it)."""
    if not body.size:
        return None
    raw = body.value()
    truncated = body.truncated
    note: dict[str, Any] = {}
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding and encoding != "identity" and not decoded:
        inflated = _inflate(raw, encoding, limit)
        if inflated is None:
            return _omitted(f"content-encoding {encoding[:40]} not inspected", body.size)
        raw, cut = inflated
        truncated = truncated or cut
        note["content_encoding"] = encoding[:40]
    if truncated:
        note.update(truncated=True, size=body.size, captured=len(raw))
    raw_content_type = headers.get("content-type", "")
    content_type = raw_content_type.lower()
    if not truncated and ("json" in content_type or raw[:1] in (b"{", b"[")):
        parsed = _json(raw, keys, masker, splice)
        if parsed is not None:
            parsed.note = note or None
            return parsed
    decoded_text = _text(raw, content_type, truncated)
    if decoded_text is None:
        return _omitted("binary body not inspected", body.size, note)
    text, codec = decoded_text
    if content_type.startswith(MULTIPART):
        masked = masker.multipart(text, _boundary(raw_content_type), keys)
    else:
        masked = masker.text(text, keys)
    data = masked.encode(codec, "replace")
    return Encoded(base64.b64encode(data).decode("ascii"), "base64", note or None)


# JSON ------------------------------------------------------------------------------------------


def loads(data: bytes | str) -> Any:
    """Strict JSON, as every parser reads it the same way (orjson): no NaN or Infinity, no
    lone surrogate, valid UTF-8, integers within 64 bits. Raises ``ValueError``."""
    return orjson.loads(data)


# The walk costs about 0.3 µs per key, the text scan about 12 ns per byte (this machine,
# ``benchmarks.transport`` bodies): walk when there are fewer keys than bytes / 25.
_BYTES_PER_KEY = 25


def _json(raw: bytes, keys: KeySet, masker: Masker, splice: bool) -> Encoded | None:
    try:
        value = orjson.loads(raw)
    except ValueError:
        return None  # masked as text instead
    if value.__class__ not in (dict, list):
        return None  # a scalar body would be ambiguous on the wire: sent as text
    if not splice:
        masker.json(value, keys)
        return Encoded(value, "json")  # the mask callback gets Python values
    # Valid JSON with nothing to mask is sent as it came. Whether there is something to mask:
    # for a dense body (many keys) a scan of its text is cheaper than walking its keys, and
    # mostly spares the walk; for few keys in much text (long values) the walk is cheaper.
    dense = raw.count(b":") * _BYTES_PER_KEY >= len(raw)
    if (dense and not keys.may_occur(raw)) or not masker.json(value, keys):
        return Encoded(orjson.Fragment(raw), "json")
    try:
        return Encoded(orjson.Fragment(orjson.dumps(value)), "json")
    except TypeError:  # nested deeper than the encoder goes
        return None


def strict(value: Any) -> Any:
    """A copy of ``value`` that strict JSON can carry: each lone UTF-16 surrogate in its
    strings replaced by U+FFFD, NaN and Infinity by None. Iterative: any depth."""
    root: list[Any] = [None]
    stack: list[tuple[Any, list[Any] | dict[Any, Any], Any]] = [(value, root, 0)]
    while stack:
        item, parent, slot = stack.pop()
        if isinstance(item, dict):
            copy: Any = {}
            for key, child in item.items():
                key = _scalar(key)
                copy[key] = None  # the keys keep their order
                stack.append((child, copy, key))
        elif isinstance(item, list | tuple):
            copy = [None] * len(item)
            for index, child in enumerate(item):
                stack.append((child, copy, index))
        else:
            copy = _scalar(item)
        parent[slot] = copy
    return root[0]


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    elif isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# Text ------------------------------------------------------------------------------------------

_CHARSET = re.compile(r"charset=[\"']?([\w.:-]+)")
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")


def _text(raw: bytes, content_type: str, truncated: bool) -> tuple[str, str] | None:
    """(the body as text, its codec), or None when it is binary: not safely inspectable."""
    match = _CHARSET.search(content_type)
    if match:
        try:
            return raw.decode(match.group(1)), match.group(1)
        except (LookupError, UnicodeDecodeError):
            pass
    multipart = content_type.startswith(MULTIPART)  # file parts are judged part by part
    if not multipart and _CONTROL.search(raw) is not None:
        return None
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if truncated and exc.start >= len(raw) - 3 and exc.reason == "unexpected end of data":
            return raw[: exc.start].decode("utf-8"), "utf-8"  # cut inside a character
    if not multipart and _printable_share(raw) < 0.9:
        return None
    return raw.decode("latin-1"), "latin-1"


def _printable_share(raw: bytes) -> float:
    sample = raw[:4096]
    printable = sum(1 for b in sample if 32 <= b < 127 or b in (9, 10, 13) or b >= 160)
    return printable / max(1, len(sample))


def _boundary(content_type: str) -> str | None:
    match = re.search(r"boundary=\"?([^\";]+)\"?", content_type)
    return match.group(1) if match else None


# Compression and notes ------------------------------------------------------------------------


def _inflate(raw: bytes, encoding: str, limit: int) -> tuple[bytes, bool] | None:
    """(inflated bytes up to ``limit``, whether they are cut), or None when this encoding or
    these bytes cannot be inflated. A stream cut at the capture cap inflates as far as it goes."""
    attempts: tuple[int, ...]
    if encoding in ("gzip", "x-gzip"):
        attempts = (47,)  # gzip or zlib header, auto-detected
    elif encoding == "deflate":
        attempts = (15, -15)  # zlib-wrapped, as the spec says, or raw as some servers send it
    else:
        return None
    for wbits in attempts:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(raw, limit + 1)
        except zlib.error:
            continue
        cut = len(out) > limit or bool(inflater.unconsumed_tail) or not inflater.eof
        return out[:limit], cut
    return None


def _omitted(why: str, size: int, note: dict[str, Any] | None = None) -> Encoded:
    return Encoded(None, None, {**(note or {}), "omitted": why, "size": size})
