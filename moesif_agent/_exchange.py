"""The compact record of one API call, filled on the request thread and queued as is.

An ``Exchange`` holds what the adapter saw in the cheapest form it had (header lists as the
server gave them, body chunks as bytes); turning it into the wire JSON is the worker's job
(``_wire.py``). Few Python containers per queued call keeps the garbage collector's scans of
the queue short, which is what dominates the tail latency of agents that queue dict trees.
"""

from __future__ import annotations

from typing import Any

# How ``request_headers`` / ``response_headers`` are stored (see _capture.header_items).
HEADERS_PAIRS = 0  # list of (name, value) str pairs, names in their usual case
HEADERS_WSGI = 1  # list of (environ key, value): HTTP_USER_AGENT, CONTENT_TYPE...
HEADERS_ASGI = 2  # list of (name, value) bytes pairs, names lower case


class Body:
    """A body teed chunk by chunk, keeping at most ``limit`` bytes and counting the rest."""

    __slots__ = ("chunks", "kept", "limit", "size")

    def __init__(self, limit: int) -> None:
        self.chunks: list[bytes] = []
        self.kept = 0
        self.size = 0
        self.limit = limit

    def add(self, chunk: bytes) -> None:
        size = len(chunk)
        self.size += size
        room = self.limit - self.kept
        if room <= 0 or not size:
            return
        if size > room:
            chunk = chunk[:room]
            size = room
        self.chunks.append(chunk)
        self.kept += size

    def value(self) -> bytes:
        chunks = self.chunks
        if len(chunks) == 1:
            return chunks[0]
        joined = b"".join(chunks)
        self.chunks = [joined]
        return joined

    @property
    def truncated(self) -> bool:
        return self.size > self.kept


class Exchange:
    """One request/response pair as captured. Plain slots; no logic beyond defaults."""

    __slots__ = (
        "api_version",
        "blocked_by",
        "company_id",
        "decoded",
        "direction",
        "error",
        "host",
        "metadata",
        "method",
        "notes",
        "path",
        "query",
        "remote_addr",
        "request_body",
        "request_header_style",
        "request_headers",
        "request_time",
        "response_body",
        "response_header_style",
        "response_headers",
        "response_time",
        "route",
        "sample_rate",
        "scheme",
        "session_token",
        "status",
        "transaction_id",
        "user_id",
        "weight",
    )

    def __init__(self) -> None:
        self.direction = "Incoming"
        self.transaction_id: str = ""
        self.request_time: float = 0.0
        self.response_time: float | None = None
        self.method = "GET"
        self.scheme = "http"
        self.host = ""
        self.path = "/"
        self.query = ""
        self.remote_addr: str | None = None
        self.request_headers: list[Any] = []
        self.request_header_style = HEADERS_PAIRS
        self.request_body: Body | None = None
        self.status: int | None = None
        self.response_headers: list[Any] = []
        self.response_header_style = HEADERS_PAIRS
        self.response_body: Body | None = None
        self.user_id: str | None = None
        self.company_id: str | None = None
        self.session_token: str | None = None
        self.metadata: dict[str, Any] | None = None
        self.api_version: str | None = None
        self.blocked_by: str | None = None
        self.weight = 1
        self.error: tuple[str, str] | None = None  # the exception's class and message
        self.route: str | None = None
        self.notes: dict[str, Any] | None = None  # adapter remarks for metadata._moesif
        self.sample_rate: float | None = None  # decided before the app, when it could be
        self.decoded = False  # response body already content-decoded despite Content-Encoding
