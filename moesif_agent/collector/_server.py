"""Serving the collector with uvicorn: on a socket we bind ourselves (so ``port=0`` yields a
known port before the first request), in the main thread (the CLI) or in a background thread
(``LocalCollector``, for tests and the demo)."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from ._app import create_app
from ._retention import Retention
from ._security import HostPolicy, warn_if_exposed
from ._store import Store
from ._watch import RemoteDocuments

__all__ = ["LocalCollector"]


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (``port`` 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto is
    # IPPROTO_TCP, and with Nagle on every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class ReadyServer(uvicorn.Server):
    """A uvicorn server that calls ``on_ready`` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_ready()


def server_config(app: Any, *, access_log: bool = False) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_config=None,
        access_log=access_log,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=5,
    )


class LocalCollector:
    """A local collector on 127.0.0.1 (an ephemeral port by default), served from a background
    thread; its event viewer is at ``collector.url + "/"``.

    Usage::

        with LocalCollector() as collector:
            agent = Agent(application_id=collector.application_id, base_uri=collector.url)
            ...  # traffic, then agent.flush()
            assert collector.stats()["events"] == 1
            errors = collector.events(status="5xx")  # every page, newest first

    ``db_path`` defaults to a file in a temporary directory that ``stop()`` removes;
    ``config_path`` / ``rules_path`` are the JSON files served at ``/v1/config`` and
    ``/v1/rules`` (re-read when they change); ``app_ids`` restricts the accepted
    ``X-Moesif-Application-Id`` values. ``port`` 0 (the default) takes any free port; another
    value gives a stable address (``port=8787`` for the viewer of a demo), and ``start()``
    raises ``OSError`` when that port is taken, so the caller can fall back to ``port=0``.
    ``retention`` bounds what the database keeps (the command line's defaults);
    ``allowed_hosts`` are host names the viewer and read API answer besides addresses and
    ``localhost``. The readers (``events()``, ``stats()``...) use the read API over HTTP.
    """

    def __init__(
        self,
        db_path: str | Path | None = None,
        *,
        config_path: str | Path | None = None,
        rules_path: str | Path | None = None,
        app_ids: Collection[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout: float = 10.0,
        retention: Retention | None = None,
        allowed_hosts: Collection[str] = (),
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port!r} is not a port number (0-65535; 0: any free port)")
        self.app_ids = tuple(app_ids)
        self._db_path = db_path
        self._config_path = config_path
        self._rules_path = rules_path
        self._host = host
        self._port = port
        self._retention = retention
        self._hosts = HostPolicy(host, allowed_hosts)
        self._start_timeout = start_timeout
        self._lock = threading.Lock()
        self._tmpdir: str | None = None
        self._store: Store | None = None
        self._server: ReadyServer | None = None
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None
        self._failure: BaseException | None = None
        self.url = ""

    @property
    def application_id(self) -> str:
        """An ``X-Moesif-Application-Id`` this collector accepts."""
        return self.app_ids[0] if self.app_ids else "local-collector"

    @property
    def db_path(self) -> Path:
        if self._store is None:
            raise RuntimeError("the collector is not running")
        return self._store.path

    def start(self) -> LocalCollector:
        """Start serving (idempotent); returns once the collector accepts connections."""
        with self._lock:
            if self._thread is not None:
                return self
            try:
                self._start()
            except BaseException:
                self._stop(timeout=self._start_timeout)
                raise
        return self

    def _start(self) -> None:
        # The port first: a taken one fails before a database file is created.
        try:
            self._socket = bind(self._host, self._port)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot listen on {self._host}:{self._port}: {exc.strerror}"
            ) from None
        self.url = url_of(self._socket)
        warn_if_exposed(self._host)
        documents = RemoteDocuments(self._config_path, self._rules_path)
        db_path = self._db_path
        if db_path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="moesif-collector-")
            db_path = Path(self._tmpdir, "collector.db")
        self._store = Store(db_path, self._retention)
        app = create_app(self._store, documents, self.app_ids, self._hosts)
        ready = threading.Event()
        self._server = ReadyServer(server_config(app), on_ready=ready.set)
        self._thread = threading.Thread(
            target=self._run, args=(self._server, self._socket), name="moesif-local-collector"
        )
        self._thread.daemon = True
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not ready.wait(0.02):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the local collector did not start: {self._failure!r}")
        self._client = httpx.Client(base_url=self.url, timeout=30.0)

    def _run(self, server: ReadyServer, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # uvicorn exits with SystemExit on startup failure
            self._failure = exc

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and release everything (idempotent)."""
        with self._lock:
            self._stop(timeout)

    def _stop(self, timeout: float) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._client is not None:
            self._client.close()
        if self._socket is not None:
            self._socket.close()
        if self._store is not None:
            self._store.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._server = self._thread = self._client = self._socket = self._store = None
        self._tmpdir = None

    def __enter__(self) -> LocalCollector:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Readers

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        if self._client is None:
            raise RuntimeError("the collector is not running")
        response = self._client.get(path, params=params)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json()

    def _list(self, name: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        params = {key: _param(value) for key, value in filters.items()}
        params.setdefault("limit", "1000")
        items: list[dict[str, Any]] = []
        while True:
            page = self._get(f"/api/{name}", params)
            items.extend(page["items"])
            if not page["next_cursor"]:
                return items
            params["cursor"] = page["next_cursor"]

    def events(self, **filters: Any) -> list[dict[str, Any]]:
        """All stored events matching ``filters`` (the ``/api/events`` filters), newest first."""
        return self._list("events", filters)

    def actions(self, **filters: Any) -> list[dict[str, Any]]:
        return self._list("actions", filters)

    def users(self, **filters: Any) -> list[dict[str, Any]]:
        return self._list("users", filters)

    def companies(self, **filters: Any) -> list[dict[str, Any]]:
        return self._list("companies", filters)

    def subscriptions(self, **filters: Any) -> list[dict[str, Any]]:
        return self._list("subscriptions", filters)

    def stats(self) -> dict[str, Any]:
        """``/api/stats``: counts of events, actions, users, companies, subscriptions..."""
        result: dict[str, Any] = self._get("/api/stats")
        return result

    def clear(self) -> dict[str, int]:
        """Delete everything stored (``DELETE /api/data``); counts of what went, by table."""
        if self._client is None:
            raise RuntimeError("the collector is not running")
        response = self._client.delete("/api/data")
        response.raise_for_status()
        deleted: dict[str, int] = response.json()["deleted"]
        return deleted


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
