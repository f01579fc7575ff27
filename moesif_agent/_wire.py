"""Exchange -> wire event (runs on the worker thread).

The Collector API event: ``request`` {time, uri, verb, api_version, ip_address, headers, body,
transfer_encoding}, ``response`` {time, status, headers, body, transfer_encoding}, and
transaction_id, session_token, user_id, company_id, metadata, direction, weight, blocked_by.
Fields without a value are omitted. Bodies go through ``_bodies`` (strict JSON when it parsed
and was masked; masked text as base64 otherwise; a note when neither is safe). No encoded event
exceeds ``MAX_EVENT_BYTES``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from . import _bodies as bodies
from ._capture import credentials_user, header_maps, new_transaction_id
from ._event_model import Dropped, apply_mask_callback
from ._exchange import Body, Exchange
from ._forwarding import Forwarding
from ._masking import KeySet, Masker

if TYPE_CHECKING:
    from ._options import Options

logger = logging.getLogger(__name__)

MAX_EVENT_BYTES = 1_000_000
_PATH_SAFE = "/%;:@&=+$,!~*()'"
_UNSAFE_PATH = re.compile(r"[^A-Za-z0-9/%;:@&=+$,!~*()'._\-]")
_QUERY_SAFE = _PATH_SAFE + "?[]"
_UNSAFE_HOST = re.compile(r"[^A-Za-z0-9.\-_~:\[\]]")
_SCHEMES = frozenset(("http", "https", "ws", "wss"))
_UNSAFE_QUERY = re.compile(r"[^A-Za-z0-9/%;:@&=+$,!~*()'._\-?\[\]]")


_second_cache: tuple[int, str] = (-1, "")


def iso_time(timestamp: float) -> str:
    """ISO 8601 UTC with milliseconds and Z: ``2024-02-06T04:45:42.914Z``."""
    global _second_cache
    seconds = int(timestamp)
    millis = int((timestamp - seconds) * 1000)
    cached_second, prefix = _second_cache
    if cached_second != seconds:  # consecutive events mostly share their second
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second_cache = (seconds, prefix)
    return f"{prefix}.{millis:03d}Z"


class WireEncoder:
    """Turns queued items into encoded wire events for one agent's options."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.masker = Masker(options)
        self.forwarding = Forwarding(options.trusted_proxies, options.client_ip_header)
        self.auth_headers = options.authorization_header_name
        self.auth_field = options.authorization_user_id_field
        self.mask_event_model = options.mask_event_model
        self.max_body = options.max_body_size

    def encode(self, item: Exchange | Mapping[str, Any]) -> bytes:
        """The JSON bytes of one event; raises ``Dropped`` when it must not be sent."""
        event = self.event(item) if isinstance(item, Exchange) else self.custom_event(item)
        if self.mask_event_model is not None:
            event = apply_mask_callback(self.mask_event_model, event)
        data = _dumps(event)
        if len(data) > MAX_EVENT_BYTES:
            data = _dumps(_without_bodies(event))
            if len(data) > MAX_EVENT_BYTES:
                raise Dropped("too_large")
        return data

    def custom_event(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """A wire event built by the caller: copied (never mutated), completed and masked."""
        if not isinstance(item, Mapping) or not isinstance(item.get("request"), Mapping):
            raise Dropped("invalid")
        try:  # a copy, and only what JSON can carry
            event: dict[str, Any] = orjson.loads(_dumps(dict(item)))
        except (Dropped, ValueError):
            raise Dropped("invalid") from None
        event.setdefault("transaction_id", new_transaction_id())
        event.setdefault("direction", "Incoming")
        masker = self.masker
        for part, names, keys in (
            ("request", masker.request_headers, masker.request_keys),
            ("response", masker.response_headers, masker.response_keys),
        ):
            section = event.get(part)
            if not isinstance(section, dict):
                continue
            if isinstance(section.get("headers"), dict):
                masker.headers(section["headers"], names)
            if section.get("transfer_encoding", "json") in ("json", "", None):
                masker.json(section.get("body"), keys)
        request = event["request"]
        uri = request.get("uri")
        if isinstance(uri, str) and "?" in uri:
            base, _, query = uri.partition("?")
            request["uri"] = base + "?" + masker.form(query, masker.query_keys)
        return event

    def event(self, ex: Exchange) -> dict[str, Any]:
        masker = self.masker
        request_headers, lower = header_maps(ex.request_header_style, ex.request_headers)
        incoming = ex.direction == "Incoming"
        user_id = ex.user_id
        if user_id is None and incoming:
            user_id = credentials_user(ex, self.auth_headers, self.auth_field, lower)
        scheme, host = ex.scheme, ex.host
        forwarding = self.forwarding
        if incoming and not lower.keys().isdisjoint(forwarding.origin_names):
            proto, forwarded_host = forwarding.origin(ex.remote_addr, lower)
            if proto is not None and proto.lower() in _SCHEMES:
                scheme = proto.lower()
            host = forwarded_host or host
        if _UNSAFE_HOST.search(host):  # "evil.example/admin?x=1#" must not become a path
            host = quote(host, safe=":[]")
        path = ex.path
        if _UNSAFE_PATH.search(path):
            path = quote(path, safe=_PATH_SAFE)
        uri = f"{scheme}://{host}{path}"
        if ex.query:
            query = masker.form(ex.query, masker.query_keys)
            if _UNSAFE_QUERY.search(query):
                query = quote(query, safe=_QUERY_SAFE)
            uri += "?" + query
        metadata: dict[str, Any] = dict(ex.metadata) if ex.metadata else {}
        notes: dict[str, Any] = dict(ex.notes) if ex.notes else {}

        request: dict[str, Any] = {"time": iso_time(ex.request_time), "uri": uri, "verb": ex.method}
        api_version = ex.api_version or self.options.api_version
        if api_version:
            request["api_version"] = api_version
        ip = self.forwarding.client_ip(ex.remote_addr, lower) if incoming else ex.remote_addr
        if ip:
            request["ip_address"] = ip
        if ex.request_body is not None:
            self._body(request, ex.request_body, lower, masker.request_keys, notes, "request")
        request["headers"] = masker.headers(request_headers, masker.request_headers)

        event: dict[str, Any] = {"request": request}
        if ex.status is not None:
            response_headers, response_lower = header_maps(
                ex.response_header_style, ex.response_headers
            )
            response: dict[str, Any] = {
                "time": iso_time(ex.response_time or ex.request_time),
                "status": ex.status,
            }
            if ex.response_body is not None:
                self._body(
                    response,
                    ex.response_body,
                    response_lower,
                    masker.response_keys,
                    notes,
                    "response",
                    decoded=ex.decoded,
                )
            response["headers"] = masker.headers(response_headers, masker.response_headers)
            event["response"] = response
        event["transaction_id"] = ex.transaction_id or new_transaction_id()
        event["direction"] = ex.direction
        if user_id:
            event["user_id"] = user_id
        if ex.company_id:
            event["company_id"] = ex.company_id
        if ex.session_token:
            event["session_token"] = ex.session_token
        if ex.route:
            metadata.setdefault("route", ex.route)
        if "traceparent" in lower or "sentry-trace" in lower:
            _trace_ids(lower, metadata)
        if ex.error:
            kind, message = ex.error
            notes["error"] = {"class": kind, "message": masker.text(message, masker.request_keys)}
        if notes:
            metadata["_moesif"] = notes
        if metadata:
            event["metadata"] = metadata
        if ex.weight != 1:
            event["weight"] = ex.weight
        if ex.blocked_by:
            event["blocked_by"] = ex.blocked_by
        return event

    def _body(
        self,
        target: dict[str, Any],
        body: Body,
        lower: Mapping[str, str],
        keys: KeySet,
        notes: dict[str, Any],
        which: str,
        decoded: bool = False,
    ) -> None:
        """Set ``body``/``transfer_encoding``; ``lower`` holds the lower-cased headers."""
        encoded = bodies.encode(
            body,
            lower,
            keys,
            self.masker,
            limit=self.max_body,
            decoded=decoded,
            splice=self.mask_event_model is None,
        )
        if encoded is None:
            return
        if encoded.note:
            notes[which + "_body"] = encoded.note
        if encoded.transfer_encoding is None:
            return
        target["transfer_encoding"] = encoded.transfer_encoding
        target["body"] = encoded.value


_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_SENTRY_TRACE = re.compile(r"([0-9a-f]{32})-[0-9a-f]{16}(?:-[01])?")


def _trace_ids(lower: Mapping[str, str], metadata: dict[str, Any]) -> None:
    """The W3C trace id (``traceparent``) and Sentry's (``sentry-trace``), so that the call
    can be found in the tracing or error tool that saw the same request."""
    match = _TRACEPARENT.match(lower.get("traceparent", "").strip())
    if match and match.group(1).strip("0"):
        metadata.setdefault("trace_id", match.group(1))
    match = _SENTRY_TRACE.match(lower.get("sentry-trace", "").strip())
    if match and match.group(1).strip("0"):
        metadata.setdefault("sentry_trace_id", match.group(1))


_OPTIONS = orjson.OPT_NON_STR_KEYS


def _dumps(event: dict[str, Any]) -> bytes:
    """Strict JSON, always (orjson: NaN and Infinity become null). A string with a lone
    surrogate (a forged JWT ``sub``, a callback's value) makes orjson refuse the event; then
    it is encoded again with U+FFFD in its place, and values JSON has no type for as their
    ``str``."""
    try:
        return orjson.dumps(event)
    except TypeError:
        pass
    try:
        return orjson.dumps(bodies.strict(event), default=str, option=_OPTIONS)
    except (TypeError, ValueError, RecursionError) as exc:
        logger.debug("moesif-agent: event not serialisable: %s", exc)
        raise Dropped("invalid") from None


def _without_bodies(event: dict[str, Any]) -> dict[str, Any]:
    event = dict(event)
    notes: dict[str, Any] = {}
    for part in ("request", "response"):
        section = event.get(part)
        if isinstance(section, dict) and "body" in section:
            section = dict(section)
            section.pop("body")
            section.pop("transfer_encoding", None)
            event[part] = section
            notes[part + "_body"] = {"omitted": "event over 1 MB"}
    metadata = dict(event.get("metadata") or {})
    metadata["_moesif"] = {**(metadata.get("_moesif") or {}), **notes}
    event["metadata"] = metadata
    return event
