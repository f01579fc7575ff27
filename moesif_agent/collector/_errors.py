"""The collector's exceptions: ``ClientError`` becomes a 4xx answer, ``StoreError`` a 503."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """A request the collector refuses: ``status`` and a message that says how to fix it.

    ``field`` names the offending JSON path (``request.time``) and ``index`` the item of a
    batch, so a client can find the one bad event among a hundred.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.index = index

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.index is not None:
            body["index"] = self.index
        return body

    def at(self, index: int | None) -> ClientError:
        """The same error, pinned to item ``index`` of a batch."""
        if index is not None and self.index is None:
            self.index = index
            self.message = f"item {index}: {self.message}"
        return self


class StoreError(Exception):
    """The database cannot be used (newer schema, not a collector database, unreadable)."""
