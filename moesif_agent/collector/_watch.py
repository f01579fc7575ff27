"""``/v1/config`` and ``/v1/rules`` documents, served from JSON files that may change while the
collector runs, with content-derived ETags.

A request costs one ``os.stat`` per file; the file is re-read when its signature changes, and
also while it was modified within the last two seconds (file times can be coarser than two
quick edits). Each version is checked field by field (``_documents``): a file that does not
parse or has a wrong field keeps the last good document in force and is logged once per
distinct content, naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._documents import DocumentError, check_config, check_rules

logger = logging.getLogger(__name__)

DEFAULT_CONFIG: dict[str, Any] = {"sample_rate": 100}
DEFAULT_RULES: list[Any] = []
_SETTLE_SECONDS = 2.0


class WatchError(Exception):
    """A config or rules file given at startup is missing or malformed."""


def _etag(content: bytes) -> str:
    return '"' + hashlib.sha256(content).hexdigest()[:20] + '"'


def _signature(stat: os.stat_result) -> tuple[int, ...]:
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_ctime_ns)


class WatchedJSON:
    """One JSON document: the file at ``path`` if given, else ``default``.

    ``expected`` is the required top-level type (``dict`` for config, ``list`` for rules);
    ``check`` raises DocumentError for a wrong field.
    """

    def __init__(
        self,
        name: str,
        path: str | Path | None,
        default: Any,
        expected: type,
        check: Callable[[Any], None],
    ) -> None:
        self.name = name
        self.path = None if path is None else Path(path).expanduser().resolve()
        self.expected = expected
        self.check = check
        self._lock = threading.Lock()
        self._signature: tuple[int, ...] | None = None
        self._raw_digest: bytes | None = None
        self._problem: tuple[str, bytes] | None = None
        self.content = b""
        self.etag = ""
        if self.path is None:
            self._set(default)
            return
        try:
            stat = self.path.stat()
            raw = self.path.read_bytes()
        except OSError as exc:
            raise WatchError(f"cannot read the {name} file {self.path}: {exc.strerror}") from None
        problem = self._parse_into(raw)
        if problem is not None:
            raise WatchError(f"the {name} file {self.path} {problem}")
        self._signature = _signature(stat)
        self._raw_digest = hashlib.sha256(raw).digest()

    def _set(self, document: Any) -> None:
        self.content = json.dumps(document, separators=(",", ":")).encode("utf-8")
        self.etag = _etag(self.content)

    def _parse_into(self, raw: bytes) -> str | None:
        """Adopt ``raw`` if it is a good document; else say what is wrong with it."""
        try:
            document = json.loads(raw)
        except RecursionError:
            return "is nested too deeply"
        except ValueError as exc:
            return f"is not valid JSON: {exc}"
        if type(document) is not self.expected:
            want = "an object" if self.expected is dict else "an array"
            return f"must hold {want} at the top level, not {type(document).__name__}"
        try:
            self.check(document)
        except DocumentError as exc:
            return f"is invalid: {exc}"
        self._set(document)
        return None

    def current(self) -> tuple[bytes, str]:
        """The document's JSON bytes and ETag, re-read if the file changed."""
        if self.path is not None:
            self._refresh(self.path)
        return self.content, self.etag

    def _refresh(self, path: Path) -> None:
        try:
            stat = path.stat()
        except OSError as exc:
            self._complain(path, f"is unreadable ({exc.strerror})")
            return
        signature = _signature(stat)
        recent = time.time() - stat.st_mtime < _SETTLE_SECONDS
        if signature == self._signature and not recent:
            return
        with self._lock:
            self._signature = signature
            try:
                raw = path.read_bytes()
            except OSError as exc:
                self._complain(path, f"is unreadable ({exc.strerror})")
                return
            digest = hashlib.sha256(raw).digest()
            if digest == self._raw_digest:
                self._problem = None
                return
            problem = self._parse_into(raw)
            if problem is None:
                self._raw_digest = digest
                self._problem = None
                logger.info("%s file %s changed; now serving ETag %s", self.name, path, self.etag)
            else:
                self._complain(path, problem, digest)

    def _complain(self, path: Path, problem: str, digest: bytes = b"") -> None:
        # Once per distinct problem and content, not once per request.
        if (problem, digest) != self._problem:
            self._problem = (problem, digest)
            logger.warning("%s file %s %s; serving the last good version", self.name, path, problem)


class RemoteDocuments:
    """The config and rules documents and the ETag of the pair (``X-Moesif-Config-ETag``)."""

    def __init__(self, config_path: str | Path | None, rules_path: str | Path | None) -> None:
        self.config = WatchedJSON("config", config_path, DEFAULT_CONFIG, dict, check_config)
        self.rules = WatchedJSON("rules", rules_path, DEFAULT_RULES, list, check_rules)
        self._pair: tuple[str, str] | None = None
        self._pair_etag = ""

    def pair_etag(self) -> str:
        _, config_etag = self.config.current()
        _, rules_etag = self.rules.current()
        pair = (config_etag, rules_etag)
        if pair != self._pair:
            digest = hashlib.sha256((config_etag + rules_etag).encode("ascii")).hexdigest()
            self._pair, self._pair_etag = pair, digest[:20]
        return self._pair_etag
