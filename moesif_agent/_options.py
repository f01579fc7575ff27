"""The agent's options: one frozen, keyword-only object, resolved once at startup.

Precedence for every scalar option: explicit argument, then the ``MOESIF_<NAME>`` environment
variable, then the default. A wrong value raises ``ValueError`` naming the option and what it
accepts, so a misconfiguration is found when the app starts, not on the first request.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_TRUSTED_PROXIES", "Options"]


class _Unset:
    def __repr__(self) -> str:
        return "<default>"


_UNSET: Any = _Unset()

DEFAULT_TRUSTED_PROXIES = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)

# Option kinds: how a value from the environment or a mapping is parsed and checked.
_STR, _OPT_STR, _INT, _FLOAT, _BOOL, _STRS, _CALLABLE = (
    "str",
    "optional str",
    "int",
    "float",
    "bool",
    "strs",
    "callable",
)


def _option(kind: str, default: Any, *, minimum: float | None = None, env: bool = True) -> Any:
    return dataclasses.field(
        default=_UNSET,
        metadata={"kind": kind, "default": default, "minimum": minimum, "env": env},
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """Configuration of a moesif-agent :class:`~moesif_agent.Agent`.

    Every field is keyword-only; omitted fields come from ``MOESIF_<FIELD_NAME>`` environment
    variables, then from the defaults documented in the README::

        options = Options(application_id="your-app-id", log_body=False)
        options = Options.from_mapping({"APPLICATION_ID": "your-app-id", "LOG_BODY": False})
    """

    # Collector
    application_id: str = _option(_STR, "")
    base_uri: str = _option(_STR, "https://api.moesif.net")
    enabled: bool = _option(_BOOL, True)
    debug: bool = _option(_BOOL, False)

    # Capture
    log_body: bool = _option(_BOOL, True)
    max_body_size: int = _option(_INT, 100_000, minimum=0)
    api_version: str | None = _option(_OPT_STR, None)
    disable_transaction_id: bool = _option(_BOOL, False)
    authorization_header_name: tuple[str, ...] = _option(_STRS, ("authorization",))
    authorization_user_id_field: str = _option(_STR, "sub")
    trusted_proxies: tuple[str, ...] = _option(_STRS, DEFAULT_TRUSTED_PROXIES)
    client_ip_header: str = _option(_STR, "x-forwarded-for")

    # Callbacks (their arguments depend on the framework, see the README)
    identify_user: Callable[..., Any] | None = _option(_CALLABLE, None, env=False)
    identify_company: Callable[..., Any] | None = _option(_CALLABLE, None, env=False)
    get_session_token: Callable[..., Any] | None = _option(_CALLABLE, None, env=False)
    get_metadata: Callable[..., Any] | None = _option(_CALLABLE, None, env=False)
    skip: Callable[..., Any] | None = _option(_CALLABLE, None, env=False)
    mask_event_model: Callable[..., Any] | None = _option(_CALLABLE, None, env=False)

    # Skip rules and sampling
    skip_paths: tuple[str, ...] = _option(_STRS, ())
    skip_methods: tuple[str, ...] = _option(_STRS, ())
    skip_probe_paths: bool = _option(_BOOL, False)
    config_refresh_interval: float = _option(_FLOAT, 300.0, minimum=1.0)

    # Masking
    default_masks: bool = _option(_BOOL, True)
    request_header_masks: tuple[str, ...] = _option(_STRS, ())
    response_header_masks: tuple[str, ...] = _option(_STRS, ())
    request_body_masks: tuple[str, ...] = _option(_STRS, ())
    response_body_masks: tuple[str, ...] = _option(_STRS, ())
    uri_query_masks: tuple[str, ...] = _option(_STRS, ())

    # Outgoing calls
    capture_outgoing: bool = _option(_BOOL, False)
    log_body_outgoing: bool = _option(_BOOL, True)
    skip_outgoing: Callable[..., Any] | None = _option(_CALLABLE, None, env=False)
    identify_user_outgoing: Callable[..., Any] | None = _option(_CALLABLE, None, env=False)
    identify_company_outgoing: Callable[..., Any] | None = _option(_CALLABLE, None, env=False)
    get_session_token_outgoing: Callable[..., Any] | None = _option(_CALLABLE, None, env=False)
    get_metadata_outgoing: Callable[..., Any] | None = _option(_CALLABLE, None, env=False)

    # Delivery
    batch_size: int = _option(_INT, 100, minimum=1)
    batch_max_time: float = _option(_FLOAT, 1.0, minimum=0.001)
    batch_max_bytes: int = _option(_INT, 10_000_000, minimum=1_100_000)
    event_queue_size: int = _option(_INT, 10_000, minimum=1)
    queue_max_bytes: int = _option(_INT, 32_000_000, minimum=1_100_000)
    connect_timeout: float = _option(_FLOAT, 5.0, minimum=0.001)
    request_timeout: float = _option(_FLOAT, 10.0, minimum=0.001)
    max_retry_time: float = _option(_FLOAT, 60.0, minimum=0.0)
    shutdown_timeout: float = _option(_FLOAT, 5.0, minimum=0.0)
    dry_run: bool = _option(_BOOL, False)
    # "auto": the user's cache dir, else the temp dir; None (or spool_max_bytes=0): no spool
    spool_dir: str | None = _option(_OPT_STR, "auto")
    spool_max_bytes: int = _option(_INT, 50_000_000, minimum=0)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is _UNSET:
                value = _from_environment(field)
            else:
                value = _coerce(field, value, source=field.name)
            object.__setattr__(self, field.name, value)
        self._validate()

    def _validate(self) -> None:
        if self.enabled and not self.dry_run and not self.application_id:
            raise ValueError(
                "moesif-agent needs an application id: pass application_id='...' "
                "(APPLICATION_ID in a settings mapping) or set MOESIF_APPLICATION_ID"
            )
        parts = urlsplit(self.base_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"base_uri must be an http(s) URL such as 'https://api.moesif.net', "
                f"got {self.base_uri!r}"
            )
        object.__setattr__(self, "base_uri", self.base_uri.rstrip("/"))
        for network in self.trusted_proxies:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies entries must be IP addresses or networks such as "
                    f"'10.0.0.0/8', got {network!r}"
                ) from None
        header = self.client_ip_header.strip().lower()
        if not re.fullmatch(r"[a-z0-9!#$%&'*+.^_`|~-]+", header):
            raise ValueError(
                "client_ip_header must name the header your trusted proxy writes: "
                f"'x-forwarded-for' (default), 'forwarded' or e.g. 'x-real-ip', got {header!r}"
            )
        object.__setattr__(self, "client_ip_header", header)
        if self.spool_dir is not None and "\0" in self.spool_dir:
            raise ValueError(
                "spool_dir must be a directory path, 'auto' (the default) or None (no spool), "
                f"got {self.spool_dir!r}"
            )
        for pattern in self.skip_paths:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"skip_paths entries must be regular expressions; {pattern!r} is not: {exc}"
                ) from None

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None, **overrides: Any) -> Options:
        """Build options from a settings mapping, as the reference agents take them.

        Keys may be field names (``log_body``) or the reference agents' UPPERCASE names
        (``LOG_BODY``, ``EVENT_BATCH_TIMEOUT``...). Keyword ``overrides`` win over the mapping.
        """
        return cls(**_field_values({**(mapping or {}), **overrides}))

    @classmethod
    def coerce(cls, options: Options | Mapping[str, Any] | None, **overrides: Any) -> Options:
        """Accept what a middleware constructor was given: Options, a mapping, or nothing."""
        if isinstance(options, Options):
            if not overrides:
                return options
            return dataclasses.replace(options, **_field_values(overrides))
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(
                f"options must be a moesif_agent.Options or a mapping of settings, "
                f"got {type(options).__name__}"
            )
        return cls.from_mapping(options, **overrides)


# The reference agents' names that are not simply a field name in upper case.
_ALIASES = {
    "EVENT_BATCH_TIMEOUT": "batch_max_time",
    "CAPTURE_OUTGOING_REQUESTS": "capture_outgoing",
    "DISABLED_TRANSACTION_ID": "disable_transaction_id",
    "MAX_BODY_SIZE": "max_body_size",
    "LOCAL_DEBUG": "debug",  # moesifdjango's name for moesifwsgi's and moesifasgi's DEBUG
}

# Older reference names that apply only when the current one is absent: moesifdjango and
# moesifwsgi read BASE_URI first and fall back on LOCAL_MOESIF_BASEURL.
_FALLBACKS = {"LOCAL_MOESIF_BASEURL": "base_uri"}

# Reference-agent settings that have no meaning here; accepted (with a warning that says what
# to do instead) so a migration is one import.
_IGNORED = {
    "EVENT_WORKER_COUNT": "one background thread delivers every event (no events/s ceiling); "
    "remove it",
    "USE_CELERY": "events are delivered by the agent's own background thread; remove it",
    "CELERY_BROKER_URL": "events are delivered by the agent's own background thread; remove it",
    "AUTHORIZATION_HEADER_NAME_SEPARATOR": "give authorization_header_name a list of header "
    "names (or a comma-separated string) instead",
    "ENABLE_BATCH_COMPRESSION": "batches are always gzip-compressed; remove it",
}

_FIELDS = {field.name: field for field in dataclasses.fields(Options)}


def _field_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` keyed by field name: reference names mapped, ignored ones dropped (with
    a warning), a fallback (``LOCAL_MOESIF_BASEURL``) only where its field is not given."""
    values: dict[str, Any] = {}
    fallbacks: dict[str, Any] = {}
    for key, value in settings.items():
        name = _field_name(key)
        if name is not None:
            (fallbacks if key in _FALLBACKS else values)[name] = value
    return {**fallbacks, **values}


def _field_name(key: str) -> str | None:
    if key in _FIELDS:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    if key in _FALLBACKS:
        return _FALLBACKS[key]
    if key.isupper() and key.lower() in _FIELDS:
        return key.lower()
    if key in _IGNORED:
        logger.warning("moesif-agent: option %s is not used: %s", key, _IGNORED[key])
        return None
    candidates = [*_FIELDS, *_ALIASES, *(name.upper() for name in _FIELDS)]
    close = difflib.get_close_matches(key, candidates, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown moesif-agent option {key!r}{hint}")


def _from_environment(field: dataclasses.Field[Any]) -> Any:
    meta = field.metadata
    variable = "MOESIF_" + field.name.upper()
    raw = os.environ.get(variable) if meta["env"] else None
    if raw is None or raw == "":
        return meta["default"]
    return _coerce(field, raw, source=f"environment variable {variable}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(field: dataclasses.Field[Any], value: Any, *, source: str) -> Any:
    kind = field.metadata["kind"]
    minimum = field.metadata["minimum"]
    name = field.name

    def fail(expected: str) -> ValueError:
        where = "" if source == name else f" (from {source})"
        return ValueError(f"option {name}{where} must be {expected}, got {value!r}")

    if kind == _STR:
        if not isinstance(value, str):
            raise fail("a string")
        return value.strip()
    if kind == _OPT_STR:
        if value is None:
            return None
        if not isinstance(value, str):
            raise fail("a string or None")
        return value.strip() or None
    if kind == _BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise fail("True or False (or one of 1/0, true/false, yes/no, on/off)")
    if kind in (_INT, _FLOAT):
        number: float
        try:
            if isinstance(value, bool):
                raise TypeError
            number = int(value) if kind == _INT else float(value)
        except (TypeError, ValueError):
            raise fail("an integer" if kind == _INT else "a number") from None
        if kind == _INT and isinstance(value, float) and value != number:
            raise fail("an integer")
        if minimum is not None and number < minimum:
            raise fail(f"at least {minimum:g}")
        return number
    if kind == _STRS:
        items: Iterable[Any]
        if isinstance(value, str):
            items = value.split(",")
        elif isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
            items = value
        else:
            raise fail("a list of strings (or a comma-separated string)")
        result = []
        for item in items:
            if not isinstance(item, str):
                raise fail("a list of strings")
            if item.strip():
                result.append(item.strip())
        return tuple(result)
    if kind == _CALLABLE:
        if value is None or callable(value):
            return value
        raise fail("a function or None")
    raise AssertionError(kind)
