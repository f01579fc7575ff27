"""Where the spool lives: one directory per application and collector, private to the user.

``spool_dir="auto"`` means the user's cache directory (``$XDG_CACHE_HOME``, else
``~/.cache``), else the temp dir (a container whose user has no writable home). Under either,
the directory is ``moesif-agent/spool/<key>``, the key a hash of the application id and the
collector address: batches go to the collector they were meant for, and the application id
(a credential) never appears in a path. Directories are made 0700; under the shared temp
dir, one that another user made first is refused.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._options import Options


def spool_key(application_id: str, base_uri: str) -> str:
    return hashlib.sha256(f"{application_id}\n{base_uri}".encode()).hexdigest()[:16]


def candidates(options: Options) -> tuple[list[str], int]:
    """The directories the spool may use, in order, and the index of the one under the
    shared temp dir (-1: none)."""
    key = spool_key(options.application_id, options.base_uri)
    if options.spool_dir != "auto":
        return [os.path.join(os.path.expanduser(options.spool_dir or ""), key)], -1
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    shared = os.path.join(tempfile.gettempdir(), f"moesif-agent-{uid}")
    return [
        os.path.join(cache, "moesif-agent", "spool", key),
        os.path.join(shared, "spool", key),
    ], 1


def make_writable(path: str, under_shared_temp: bool) -> None:
    """Create ``path`` (0700) if need be; OSError if it cannot be used."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if under_shared_temp:
        ours = os.path.dirname(os.path.dirname(path))
        info = os.lstat(ours)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise PermissionError(f"{ours} is not a private directory of this user")
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError("not writable")


def unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
