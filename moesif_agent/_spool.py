"""The on-disk spool: batches the collector could not take, kept until it can (worker thread).

One directory per application and collector (see ``_spooldir``), one file per batch holding
the gzip-compressed JSON array exactly as it is POSTed, named
``<time ns>-<pid>-<seq>-<items>.<channel>.json.gz``: a sorted listing is oldest first, and a
name says what the file holds without opening it.

The processes of one server (gunicorn's workers, the next process after a restart) share it:

- a file is written under a temporary name, fsynced and renamed, so a reader only ever sees
  whole files whatever moment a writer was killed at; a killed writer's temporary file is
  removed once it is stale;
- a sender holds ``flock`` on a file while it sends it, and deletes it under that lock after
  the collector's 2xx: two live processes never send the same file, and the kernel releases
  the lock of a process that dies (even by SIGKILL), so another sends its file;
- the directory is bounded by bytes: the oldest files go first, and are counted;
- a file that does not decompress, or is not one of ours, is moved to ``bad/`` and counted.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import stat
import sys
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._guard import log_once
from ._spooldir import candidates, make_writable, unlink

if sys.platform != "win32":
    import fcntl

if TYPE_CHECKING:
    from ._options import Options

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{19})-(\d+)-([0-9a-f]+)-(\d+)\.([a-z_]+)\.json\.gz$")
_TEMP = ".tmp-"
_STALE_TEMP = 60.0  # seconds: a write takes milliseconds; an older temporary file is a leftover
_RESCAN = 5.0  # seconds between listings while there are files (other processes add some)
_IDLE_RESCAN = 60.0  # ... and while there are none (an exiting process may leave some)
_BAD_KEEP = 16  # files kept in bad/ for a look; older ones are removed
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@dataclass(eq=False)
class Entry:
    path: str
    name: str
    size: int
    count: int  # items in the batch
    channel: str
    created_ns: int


@dataclass(eq=False)
class Claim:
    """A file this process holds the lock of, read and checked."""

    entry: Entry
    fd: int
    body: bytes  # gzip, as it is POSTed
    payload: bytes  # the JSON array, to split a batch the collector refuses


class Spool:
    """One application's spool directory, as the worker thread of one process uses it."""

    def __init__(self, dirs: list[str], max_bytes: int, *, shared_temp: int = -1) -> None:
        self.dirs = dirs  # looked in, oldest file first; the first writable one is written to
        self.max_bytes = max_bytes
        self._shared_temp = shared_temp  # index of the dir under the shared temp dir
        self.dir: str | None = None
        self.disabled = False
        self._entries: list[Entry] = []
        self._total = 0
        self._scanned = float("-inf")
        self.after_fork_in_child()

    @classmethod
    def from_options(cls, options: Options) -> Spool | None:
        """The spool these options ask for, or None when it is off."""
        if options.dry_run or not options.spool_dir or options.spool_max_bytes <= 0:
            return None
        if sys.platform == "win32":  # no flock: processes could not share the directory
            logger.debug("moesif-agent: the spool needs POSIX file locks; it is off")
            return None
        dirs, shared_temp = candidates(options)
        return cls(dirs, options.spool_max_bytes, shared_temp=shared_temp)

    def after_fork_in_child(self) -> None:
        """Per-process counters start at zero; claims inherited from the parent are closed
        (closing our copy keeps the parent's lock; unlocking it would release it)."""
        for fd in getattr(self, "_claims", ()):
            try:
                os.close(fd)
            except OSError:
                pass
        self._claims: set[int] = set()
        self._seq = 0
        self.written = self.written_files = 0
        self.resent = self.resent_files = 0
        self.set_aside_files = 0

    # Writing -----------------------------------------------------------------------------------

    def write(self, channel: str, body: bytes, count: int) -> tuple[bool, int]:
        """Keep one batch. (stored, items removed to make room); not stored when the spool
        cannot be written (it is then disabled, with one warning) or the batch alone is
        larger than the bound."""
        directory = self._writable_dir()
        if directory is None or len(body) > self.max_bytes:
            return False, 0
        if time.monotonic() - self._scanned >= _RESCAN:
            self._scan()
        removed = self._make_room(len(body))
        self._seq += 1
        pid = os.getpid()
        created = time.time_ns()
        name = f"{created:019d}-{pid}-{self._seq:x}-{count}.{channel}.json.gz"
        temp = os.path.join(directory, f"{_TEMP}{pid}-{self._seq:x}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o600)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)  # the data is on disk before the name says the file is whole
            finally:
                os.close(fd)
            path = os.path.join(directory, name)
            os.rename(temp, path)
        except OSError as exc:
            unlink(temp)
            self.disable(f"{directory}: {exc}")
            return False, removed
        self._entries.append(Entry(path, name, len(body), count, channel, created))
        self._total += len(body)
        self.written += count
        self.written_files += 1
        return True, removed

    def _writable_dir(self) -> str | None:
        if self.dir is not None or self.disabled:
            return self.dir
        problems = []
        for index, path in enumerate(self.dirs):
            try:
                make_writable(path, index == self._shared_temp)
            except (OSError, ValueError) as exc:  # ValueError: a path the OS cannot take
                problems.append(f"{path}: {exc}")
                continue
            self.dir = path
            return path
        self.disable("; ".join(problems))
        return None

    def disable(self, why: str) -> None:
        self.disabled = True
        log_once(
            "spool-disabled",
            logging.WARNING,
            "moesif-agent: the spool cannot be written (%s); batches the collector cannot "
            "take are dropped and counted instead (set spool_dir to a writable directory, or "
            "spool_dir=None to silence this)",
            why,
        )

    def _make_room(self, size: int) -> int:
        """Remove the oldest files (not one another process is sending) until ``size`` more
        bytes fit; the items they held."""
        removed = 0
        for entry in list(self._entries):
            if self._total + size <= self.max_bytes:
                break
            fd = self._lock(entry)
            if fd is None:
                continue
            try:
                unlink(entry.path)
                removed += entry.count
            finally:
                os.close(fd)
            self._forget(entry)
        return removed

    # Reading -----------------------------------------------------------------------------------

    def claim(self) -> Claim | None:
        """The oldest file no other process is sending, locked and checked; None if none."""
        since = time.monotonic() - self._scanned
        if since >= (_RESCAN if self._entries else _IDLE_RESCAN):
            self._scan()
        for entry in list(self._entries):
            fd = self._lock(entry)
            if fd is None:
                continue
            try:
                with open(fd, "rb", closefd=False) as file:
                    body = file.read()
                payload = gzip.decompress(body)
                if payload[:1] != b"[" or payload[-1:] != b"]":
                    raise ValueError("not a JSON array")
            except (OSError, EOFError, ValueError, zlib.error) as exc:
                self.set_aside(entry, exc)
                os.close(fd)
                continue
            self._claims.add(fd)
            return Claim(entry, fd, body, payload)
        return None

    def done(self, claim: Claim) -> None:
        """The batch was delivered (or split and handled): delete it, then unlock."""
        unlink(claim.entry.path)
        self._unclaim(claim)
        self._forget(claim.entry)
        self.resent += claim.entry.count
        self.resent_files += 1

    def release(self, claim: Claim) -> None:
        """Not delivered: unlock it, for a later attempt (by us or another process)."""
        self._unclaim(claim)

    def pending(self) -> bool:
        return bool(self._entries)

    def _unclaim(self, claim: Claim) -> None:
        self._claims.discard(claim.fd)
        os.close(claim.fd)

    def _lock(self, entry: Entry) -> int | None:
        """An open, flock-ed descriptor of a file that still exists; None if another process
        holds it or it is gone (then forgotten)."""
        try:
            fd = os.open(entry.path, os.O_RDONLY | _CLOEXEC)
        except OSError:
            self._forget(entry)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Sent and deleted by another process between our open and our lock.
            gone = os.fstat(fd).st_nlink == 0
        except OSError:
            os.close(fd)
            return None
        if gone:
            os.close(fd)
            self._forget(entry)
            return None
        return fd

    def _forget(self, entry: Entry) -> None:
        try:
            self._entries.remove(entry)
        except ValueError:
            return
        self._total -= entry.size

    def _scan(self) -> None:
        self._scanned = time.monotonic()
        entries = []
        stale = time.time() - _STALE_TEMP
        for directory in self.dirs:
            try:
                listing = list(os.scandir(directory))
            except (OSError, ValueError):
                continue
            for item in listing:
                name = item.name
                if name == "bad":
                    continue
                try:
                    info = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                if name.startswith(_TEMP):
                    if info.st_mtime < stale:
                        unlink(item.path)
                    continue
                match = _NAME.match(name)
                if match is None or not stat.S_ISREG(info.st_mode):
                    entry = Entry(item.path, name, info.st_size, 0, "", 0)
                    self.set_aside(entry, ValueError("not a spool file name"))
                    continue
                count, channel = int(match[4]), match[5]
                entries.append(Entry(item.path, name, info.st_size, count, channel, int(match[1])))
        entries.sort(key=lambda entry: entry.name)
        self._entries = entries
        self._total = sum(entry.size for entry in entries)

    def set_aside(self, entry: Entry, why: BaseException) -> None:
        self._forget(entry)
        bad = os.path.join(os.path.dirname(entry.path), "bad")
        try:
            os.makedirs(bad, mode=0o700, exist_ok=True)
            os.replace(entry.path, os.path.join(bad, entry.name))
            kept = sorted(os.listdir(bad))
            for name in kept[: max(0, len(kept) - _BAD_KEEP)]:
                unlink(os.path.join(bad, name))
        except OSError:
            unlink(entry.path)
        self.set_aside_files += 1
        log_once(
            "spool-bad",
            logging.WARNING,
            "moesif-agent: %s is not a spool file the agent can read (%s); moved to bad/ "
            "(logged once)",
            entry.path,
            why,
        )

    def stats(self) -> dict[str, Any]:
        try:
            oldest = self._entries[0].created_ns
        except IndexError:
            oldest = None
        age = None if oldest is None else max(0.0, (time.time_ns() - oldest) / 1e9)
        return {
            "dir": self.dir or self.dirs[0],
            "enabled": not self.disabled,
            "files": len(self._entries),
            "bytes": self._total,
            "oldest_age_s": age,
            "spooled": self.written,
            "spooled_files": self.written_files,
            "resent": self.resent,
            "resent_files": self.resent_files,
            "set_aside": self.set_aside_files,
        }
