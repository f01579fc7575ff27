"""``moesif-agent collector``: run the local collector in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from ._app import create_app
from ._errors import StoreError
from ._progress import Progress
from ._retention import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_EVENTS,
    Retention,
    format_duration,
    parse_duration,
)
from ._security import HostPolicy, warn_if_exposed
from ._server import ReadyServer, bind, server_config, url_of
from ._store import Store
from ._watch import RemoteDocuments, WatchError

logger = logging.getLogger(__name__)

DEFAULT_DB = os.path.join(".moesif", "collector.db")


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (0-65535; 0: any)")
    return port


def _max_events(value: str) -> int | None:
    try:
        count = int(value.replace("_", "").replace(",", ""))
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of events (0: no limit)")
    return count or None


def _max_age(value: str) -> float | None:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _describe(retention: Retention) -> str:
    """``keeps the newest 1,000,000 events, up to 30d old``."""
    kept = "everything"
    if retention.max_events is not None:
        kept = f"the newest {retention.max_events:,} events"
    if retention.max_age is not None:
        kept += f", up to {format_duration(retention.max_age)} old"
    return "keeps " + kept


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moesif-agent collector",
        description="Run the local collector: a Moesif Collector API server storing what it "
        "receives in SQLite, with a read API under /api and an API dashboard at /.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (127.0.0.1); any other makes the captured data reachable "
        "from the network",
    )
    parser.add_argument(
        "--port", type=_port, default=8787, help="port to listen on (8787; 0: any free port)"
    )
    parser.add_argument(
        "--db", default=DEFAULT_DB, help=f"SQLite database, created if missing ({DEFAULT_DB})"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help='JSON object served at GET /v1/config (default {"sample_rate": 100}); '
        "re-read when it changes",
    )
    parser.add_argument(
        "--rules",
        metavar="FILE",
        help="JSON array served at GET /v1/rules (default []); re-read when it changes",
    )
    parser.add_argument(
        "--app-id",
        metavar="ID",
        nargs="+",
        action="extend",
        default=[],
        help="accept only these X-Moesif-Application-Id values (default: any non-empty id)",
    )
    parser.add_argument(
        "--max-events",
        type=_max_events,
        default=DEFAULT_MAX_EVENTS,
        metavar="N",
        help=f"keep at most N events (and N actions), deleting the oldest "
        f"({DEFAULT_MAX_EVENTS:,}; 0: no limit)",
    )
    parser.add_argument(
        "--max-age",
        type=_max_age,
        default=DEFAULT_MAX_AGE,
        metavar="DURATION",
        help=f"delete events and actions that arrived longer ago than DURATION, e.g. 12h, 7d "
        f"({format_duration(DEFAULT_MAX_AGE)}; off: no limit)",
    )
    parser.add_argument(
        "--reset", action="store_true", help="delete everything stored in --db, then serve"
    )
    parser.add_argument(
        "--allow-host",
        metavar="NAME",
        action="append",
        default=[],
        help="also answer the viewer and /api under this host name (IP addresses and "
        "localhost always work; other names are refused against DNS rebinding; '*': any)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line while events arrive")
    parser.add_argument(
        "--ready-file",
        metavar="PATH",
        help="write the collector's URL to PATH once it accepts connections (removed on exit)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (info)",
    )
    return parser


def _configure_logging(level: str, access_log: bool) -> None:
    # The collector command is the main program, so it owns the logging setup.
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("uvicorn").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    if access_log:
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)


def _write_ready_file(path: Path, url: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(url + "\n", encoding="utf-8")
    os.replace(temporary, path)


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help or a usage error; argparse has printed why
        return exc.code if isinstance(exc.code, int) else 2
    _configure_logging(args.log_level, args.access_log)
    ready_file = Path(args.ready_file).resolve() if args.ready_file else None
    if ready_file is not None and not ready_file.parent.is_dir():
        logger.error("moesif-agent collector: no directory for --ready-file %s", ready_file)
        return 2

    try:
        documents = RemoteDocuments(args.config, args.rules)
    except WatchError as exc:
        logger.error("moesif-agent collector: %s", exc)
        return 2
    # The port before the database: a taken port must not leave a new database behind.
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        logger.error(
            "moesif-agent collector: cannot listen on %s:%d: %s", args.host, args.port, exc
        )
        return 1
    retention = Retention(args.max_events, args.max_age)
    try:
        store = Store(args.db, retention)
    except StoreError as exc:
        sock.close()
        logger.error("moesif-agent collector: %s", exc)
        return 2
    warn_if_exposed(args.host)
    if args.reset:
        deleted = store.clear()
        store.vacuum()
        logger.info(
            "moesif-agent collector: --reset deleted %s from %s",
            ", ".join(f"{count} {table}" for table, count in deleted.items()),
            store.path,
        )

    url = url_of(sock)

    def on_ready() -> None:
        logger.info(
            "moesif-agent collector listening on %s (db %s, %s, config %s, rules %s, "
            "app ids %s); event viewer at %s/",
            url,
            store.path,
            _describe(retention),
            documents.config.path or "default",
            documents.rules.path or "default",
            ", ".join(args.app_id) if args.app_id else "any",
            url,
        )
        if ready_file is not None:
            _write_ready_file(ready_file, url)

    # The event loop parses requests while the writer thread runs SQLite without the GIL;
    # each time the writer needs the GIL back it may wait a whole switch interval (5 ms by
    # default) for the loop. A shorter interval keeps the pipeline moving. This process is
    # the collector, so the interpreter-wide setting is ours to make.
    sys.setswitchinterval(0.001)
    hosts = HostPolicy(args.host, args.allow_host)
    app = create_app(store, documents, args.app_id, hosts)
    server = ReadyServer(server_config(app, access_log=args.access_log), on_ready)
    progress = None if args.quiet else Progress(store.activity, sys.stderr)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # uvicorn handles signals while it serves and re-raises them once it has stopped;
        # they land here, so a requested stop ends in a clean exit rather than a traceback.
        server.should_exit = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    if progress is not None:
        progress.start()
    try:
        server.run(sockets=[sock])
    finally:
        if progress is not None:
            progress.stop()
        sock.close()
        store.close()
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("moesif-agent collector stopped")
    return 0
