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
HEADERS_WSGI = 1  # a copy of the environ (or (key, value) pairs): HTTP_USER_AGENT, CONTENT_TYPE...
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
    """One request/response pair as captured. Plain data; no logic beyond defaults.

    The fields every call sets are slots; the ones few calls set are class-level defaults,
    so that creating an exchange (on every request) stores only what it must. Setting one of
    those gives that exchange an instance dict."""

    __slots__ = (
        "__dict__",
        "host",
        "method",
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
        "scheme",
        "status",
        "transaction_id",
        "user_id",
    )

    direction = "Incoming"
    company_id: str | None = None
    session_token: str | None = None
    metadata: dict[str, Any] | None = None
    api_version: str | None = None
    blocked_by: str | None = None
    weight = 1
    error: tuple[str, str] | None = None  # the exception's class and message
    notes: dict[str, Any] | None = None  # adapter remarks for metadata._moesif
    sample_rate: float | None = None  # decided before the app, when it could be
    decoded = False  # response body already content-decoded despite Content-Encoding

    def __init__(
        self, method: str = "GET", path: str = "/", query: str = "", request_time: float = 0.0
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.request_time = request_time
        self.transaction_id = ""
        self.scheme = "http"
        self.host = ""
        self.remote_addr: str | None = None
        self.request_headers: Any = ()  # as request_header_style says
        self.request_header_style = HEADERS_PAIRS
        self.request_body: Body | None = None
        self.status: int | None = None
        self.response_headers: Any = ()
        self.response_header_style = HEADERS_PAIRS
        self.response_body: Body | None = None
        self.response_time: float | None = None
        self.route: str | None = None
        self.user_id: str | None = None
