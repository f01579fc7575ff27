"""Request bodies: read with a size cap, gunzip with a hard cap, parse JSON.

``read_body`` runs on the event loop; the rest runs on the loop for small bodies and on a
worker thread for large ones (parsing a 50 MB batch must not stall other connections).
"""

from __future__ import annotations

import json
import re
import zlib
from typing import TYPE_CHECKING, Any

from ._errors import ClientError

if TYPE_CHECKING:
    from starlette.requests import Request

# Slack for compressed bodies: gzip of incompressible data is slightly larger than the data.
_COMPRESSED_SLACK = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_SPLIT = "send fewer items per request"
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


class InflatedTooLarge(ClientError):
    """The decompressed body is over the limit (a 413)."""


def too_large(what: str, size: int | None, limit: int, hint: str) -> ClientError:
    """413: ``what`` is over ``limit`` bytes (``size`` when known); ``hint`` says what to do."""
    if size is None:
        return ClientError(413, f"{what} exceeds the limit of {limit} bytes ({_mb(limit)}); {hint}")
    return ClientError(
        413, f"{what} is {size} bytes; the limit is {limit} bytes ({_mb(limit)}); {hint}"
    )


async def read_body(request: Request, limit: int) -> tuple[bytes, str | None]:
    """The raw body and its content coding (None for identity), refusing more than ``limit``."""
    coding = request.headers.get("content-encoding", "").strip().lower() or None
    if coding == "identity":
        coding = None
    if coding is not None and coding not in _WBITS:
        raise ClientError(
            415, f"unsupported Content-Encoding {coding!r}; send gzip, deflate or identity"
        )
    cap = limit if coding is None else limit + _COMPRESSED_SLACK
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise too_large("request body", int(declared), limit, _SPLIT)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise too_large("request body", None, limit, _SPLIT)
        chunks.append(chunk)
    body = b"".join(chunks)
    if coding is None and body[:2] == _GZIP_MAGIC:
        # JSON never starts with 0x1f: a gzip body sent without its header is still gzip.
        coding = "gzip"
    return body, coding


def _inflate(raw: bytes, coding: str, limit: int) -> bytes:
    wbits = _WBITS[coding]
    out: list[bytes] = []
    total = 0
    data = raw
    inflater = zlib.decompressobj(wbits)
    try:
        while True:
            # max_length bounds what one call may allocate: a gzip bomb stops at limit + 1.
            chunk = inflater.decompress(data, limit + 1 - total)
            total += len(chunk)
            if total > limit:
                error = too_large("decompressed request body", None, limit, _SPLIT)
                raise InflatedTooLarge(error.status, error.message)
            out.append(chunk)
            if inflater.eof:
                data = inflater.unused_data
                if not data.strip(b"\0"):
                    break
                inflater = zlib.decompressobj(wbits)  # a multi-member gzip stream
                continue
            data = inflater.unconsumed_tail
            if not data:
                raise ClientError(
                    400, f"{coding} body is truncated ({len(raw)} bytes received); send it whole"
                )
    except zlib.error as exc:
        raise ClientError(400, f"body is not valid {coding} data: {exc}") from None
    return b"".join(out)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (only finite numbers are allowed)")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_raw_decode = _decoder.raw_decode
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, pos: int) -> int:
    """The index of the first non-whitespace character at or after ``pos``."""
    found = _WHITESPACE.match(text, pos)
    return pos if found is None else found.end()


def decode_text(raw: bytes, coding: str | None, limit: int) -> str:
    """Decompress (output bounded by ``limit``) and decode UTF-8; failures are ClientErrors."""
    body = raw if coding is None else _inflate(raw, coding, limit)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ClientError(
            400,
            f"request body is not valid UTF-8 (byte 0x{body[exc.start]:02x} at offset "
            f"{exc.start}); JSON must be UTF-8 encoded",
        ) from None
    if not text.strip():
        raise ClientError(400, "request body is empty; send a JSON document")
    return text


def parse_json(text: str) -> Any:
    try:
        return _decoder.decode(text)
    except RecursionError:
        raise ClientError(400, "request body JSON is nested too deeply") from None
    except ValueError as exc:
        raise ClientError(400, f"request body is not valid JSON: {exc}") from None


def split_array(text: str) -> list[tuple[Any, str]] | None:
    """Each item of a JSON array with its own JSON text, or None if ``text`` is not an array.

    The texts are slices of the body, so an event is stored exactly as sent without encoding
    it again (which would cost as much as parsing it).
    """
    pos = _skip(text, 0)
    if not text.startswith("[", pos):
        return None
    pos = _skip(text, pos + 1)
    items: list[tuple[Any, str]] = []
    try:
        if text.startswith("]", pos):
            end = pos + 1
        else:
            while True:
                item, end = _raw_decode(text, pos)
                items.append((item, text[pos:end]))
                pos = _skip(text, end)
                if text.startswith(",", pos):
                    pos = _skip(text, pos + 1)
                    continue
                if not text.startswith("]", pos):
                    raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
                end = pos + 1
                break
        pos = _skip(text, end)
        if pos != len(text):
            raise json.JSONDecodeError("Extra data", text, pos)
    except RecursionError:
        raise ClientError(400, "request body JSON is nested too deeply") from None
    except ValueError as exc:
        raise ClientError(400, f"request body is not valid JSON: {exc}") from None
    return items
