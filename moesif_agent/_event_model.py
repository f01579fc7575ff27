"""The event as the ``mask_event_model`` callback sees it (worker thread).

The callback gets the complete wire event (response body included) as a dict whose fields
also work as attributes, like the reference agents' ``EventModel``, so mask functions
written for them (``event.response.body = None``) run unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._guard import callback_failed


class Dropped(Exception):
    """The event must not be sent; ``reason`` is the stats key it is counted under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def apply_mask_callback(callback: Callable[[Any], Any], event: dict[str, Any]) -> dict[str, Any]:
    """Run the user's ``mask_event_model`` on the complete event; ``Dropped`` when it
    removes the event or fails."""
    try:
        masked = callback(_model_view(event))
    except Exception as exc:
        callback_failed("mask_event_model", exc)
        raise Dropped("mask_error") from None
    if masked is None:
        raise Dropped("masked_out")
    if not isinstance(masked, dict):
        callback_failed(
            "mask_event_model",
            TypeError(f"returned {type(masked).__name__}, expected the event dict or None"),
        )
        raise Dropped("mask_error")
    # ``event.response.body = None`` (the reference agents' idiom) removes the body.
    for part in (masked, masked.get("request"), masked.get("response")):
        if isinstance(part, dict):
            for key in [key for key, value in part.items() if value is None]:
                del part[key]
            if part is not masked and "body" not in part:
                part.pop("transfer_encoding", None)
    return masked


_MODEL_FIELDS = {
    "event": frozenset(
        "request response transaction_id session_token tags user_id company_id metadata "
        "direction weight blocked_by".split()
    ),
    "request": frozenset(
        "time uri verb headers api_version ip_address body transfer_encoding".split()
    ),
    "response": frozenset("time status headers ip_address body transfer_encoding".split()),
}


class _Model(dict):  # type: ignore[type-arg]
    """A wire-event dict whose fields also read and write as attributes, as the reference
    agents' ``EventModel`` does (``event.response.body = None``), so their
    ``mask_event_model`` functions work unchanged. An unset field reads as None, as there."""

    __slots__ = ("_fields",)

    def __init__(self, data: dict[str, Any], fields: frozenset[str]) -> None:
        super().__init__(data)
        object.__setattr__(self, "_fields", fields)

    def __getattr__(self, name: str) -> Any:
        if name != "_fields" and name in self._fields:
            return self.get(name)
        raise AttributeError(f"the event has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_fields":  # copy.copy / deepcopy restoring the slot
            object.__setattr__(self, name, value)
        elif name in self._fields:
            self[name] = value
        else:
            raise AttributeError(f"the event has no field {name!r}")

    def __delattr__(self, name: str) -> None:
        self.pop(name, None)


def _model_view(event: dict[str, Any]) -> _Model:
    view = _Model(event, _MODEL_FIELDS["event"])
    for part in ("request", "response"):
        if isinstance(event.get(part), dict):
            view[part] = _Model(event[part], _MODEL_FIELDS[part])
    return view
