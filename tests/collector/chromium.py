"""Headless Chromium for the browser tests: Debian's ``chromium`` package, installed with
apt-get when it is missing.

Playwright's own browser download (``playwright install``) needs a host a closed network does
not reach; Debian's package comes from the distribution's mirror, which it does.
"""

from __future__ import annotations

import os
import shutil
import subprocess

CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = "install it with: sudo apt-get update && sudo apt-get install -y chromium"
ARGS = [
    "--headless",
    "--no-sandbox",  # as root in a container: Chromium's sandbox needs user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps calling Google's services, and on a closed network the
    # refused connections slow it down and fill its log.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
APT_TIMEOUT = 600.0
# apt-get's complaints when it has no package lists, or stale ones: `apt-get update` fixes them.
_NO_LISTS = ("Unable to locate package", "has no installation candidate", "Failed to fetch")


def _apt_get(apt: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        [apt, *args], capture_output=True, text=True, env=env, timeout=APT_TIMEOUT, check=False
    )


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stderr.strip() or result.stdout.strip())[-500:]


def install_chromium(path: str = CHROMIUM) -> str | None:
    """Installs Chromium with apt-get unless ``path`` exists; returns why it could not, or None.

    ``apt-get update`` runs only when the install fails for lack of package lists.
    """
    if os.path.exists(path):
        return None
    apt = shutil.which("apt-get")
    if apt is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "apt-get needs root and the tests do not run as root"
    try:
        result = _apt_get(apt, "install", "-y", "chromium")
        if result.returncode != 0 and any(s in result.stdout + result.stderr for s in _NO_LISTS):
            update = _apt_get(apt, "update")
            if update.returncode != 0:
                return f"`apt-get update` failed: {_tail(update)}"
            result = _apt_get(apt, "install", "-y", "chromium")
    except subprocess.TimeoutExpired as exc:
        return f"`{' '.join(map(str, exc.cmd))}` took more than {exc.timeout:.0f} s"
    if result.returncode != 0:
        return f"`apt-get install -y chromium` failed: {_tail(result)}"
    if not os.path.exists(path):
        return f"`apt-get install -y chromium` succeeded but {path} is missing"
    return None
