"""Masking of bodies that are not strict JSON, as text (worker thread).

Forms and query strings, NDJSON, JSON that is cut or not quite JSON, JSON escaped inside a
string, ``key: value`` lines, XML elements and multipart parts are masked pair by pair by
their key, as far as each pair goes; what cannot be read as text is replaced by its size.
"""

from __future__ import annotations

import json
import re
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_plus

if TYPE_CHECKING:
    from ._masking import KeySet

MASK = "[REDACTED]"


def mask_text(text: str, keys: KeySet) -> str:
    """Mask the values of ``keys`` in a body that is not strict JSON (forms, NDJSON,
    JSON-ish or cut JSON, escaped JSON inside strings, ``key: value`` lines, XML
    elements), pair by pair, as far as each pair goes. Values nested inside a masked
    key's object are masked by their own keys."""
    if not keys or not text:
        return text
    for pattern, decode, masked in _TEXT_PAIRS:
        text = pattern.sub(partial(_mask_pair, keys, decode, masked), text)

    def element(match: re.Match[str]) -> str:
        if match.group(1).rpartition(":")[2] not in keys:
            return match.group(0)
        return f"<{match.group(1)}{match.group(2) or ''}>{MASK}</{match.group(1)}>"

    return _XML_ELEMENT.sub(element, text)


def mask_multipart(text: str, boundary: str | None, keys: KeySet) -> str:
    """Mask a ``multipart/form-data`` body: a part named by ``keys`` loses its content,
    other text parts are masked as text, binary parts are replaced by their size."""
    if boundary is None:  # sniff it: the body starts with "--boundary"
        first = text.lstrip("\r\n").split("\n", 1)[0].strip()
        if not first.startswith("--") or len(first) < 3:
            return mask_text(text, keys)
        boundary = first[2:]
    delimiter = "--" + boundary
    parts = text.split(delimiter)
    for index, part in enumerate(parts):
        head, sep, content = part.partition("\r\n\r\n")
        if not sep:
            head, sep, content = part.partition("\n\n")
        if not sep:
            continue
        tail = "\r\n" if content.endswith("\r\n") else "\n" if content.endswith("\n") else ""
        value = content[: len(content) - len(tail)]
        if _part_name(head) in keys:
            value = MASK
        elif _BINARY_TEXT.search(value) is not None:
            value = f"[binary content omitted: {len(value)} bytes]"
        else:
            value = mask_text(value, keys)
        parts[index] = head + sep + value + tail
    return delimiter.join(parts)


def _part_name(head: str) -> str | None:
    """A multipart part's field name: name="x", name=x, or RFC 5987 name*=UTF-8''x."""
    match = _PART_NAME.search(head)
    if match is None:
        return None
    value = match.group(2) if match.group(2) is not None else match.group(3)
    if match.group(1):  # charset'language'percent-encoded
        value = unquote(value.rpartition("'")[2], errors="replace")
    return str(value)


def _mask_pair(keys: KeySet, decode: Any, masked: str, match: re.Match[str]) -> str:
    if decode(match.group("key")) not in keys:
        return match.group(0)
    return match.group("head") + masked


def _json_key(key: str) -> str:
    if "\\" in key:  # escapes such as \u0077 spell ordinary letters
        try:
            decoded: str = json.loads(f'"{key}"')
            return decoded
        except ValueError:
            pass
    return key


def _escaped_json_key(key: str) -> str:
    return _json_key(key.replace('\\"', '"'))


# Key/value pairs in text, as far as they go in a body that may have been cut short (the value
# may be unterminated): "key": value (JSON), \"key\": \"value\" (JSON inside a JSON string),
# key=value (forms, query strings), key: value lines (YAML, .env). Objects and arrays are
# left to their own keys.
_TEXT_PAIRS: list[tuple[re.Pattern[str], Any, str]] = [
    (
        re.compile(
            r'(?P<head>"(?P<key>(?:[^"\\\n]|\\.){1,256})"\s*:\s*)(?:"(?:[^"\\]|\\.)*"?|[^,{}\[\]\s"]+)'
        ),
        _json_key,
        f'"{MASK}"',
    ),
    (
        re.compile(
            r'(?P<head>\\"(?P<key>(?:[^"\\]|\\[^"]){1,256})\\"\s*:\s*)'
            r'(?:\\"(?:[^"\\]|\\[^"])*(?:\\"|$)|[^,{}\[\]\s\\"]+)'
        ),
        _escaped_json_key,
        f'\\"{MASK}\\"',
    ),
    (
        re.compile(r"(?P<head>(?:^|(?<=[&;?\s]))(?P<key>[^=&;\s\"'<>]{1,256})=)[^&;\s]*"),
        unquote_plus,
        MASK,
    ),
    (
        re.compile(
            r"(?P<head>^[ \t]*(?P<key>[\w.\-\[\]]{1,64})[ \t]*[:=][ \t]*)(?![\s{\[]).*$", re.M
        ),
        str,
        MASK,
    ),
]


_XML_ELEMENT = re.compile(r"<([A-Za-z_][\w.:-]{0,63})(\s[^<>]*)?>[^<]*</\1>")
_PART_NAME = re.compile(r"(?i)content-disposition:[^\r\n]*?\bname(\*?)=(?:\"([^\"]*)\"|([^;\s]+))")
_BINARY_TEXT = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
