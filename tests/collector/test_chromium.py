"""The browser tests' Chromium setup, against a fake apt-get (never the real one)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.collector.chromium import install_chromium

# Shell builtins only: PATH holds nothing but this script.
# Fails "install" until "update" ran (no package lists yet), then installs $FAKE_CHROMIUM.
FAKE_APT = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$1" in
  update) [ -n "$FAKE_UPDATE_FAILS" ] && { echo "E: network down" >&2; exit 100; }
          : > "$FAKE_LISTS" ;;
  install) [ -f "$FAKE_LISTS" ] || { echo "E: Unable to locate package chromium" >&2; exit 100; }
           : > "$FAKE_CHROMIUM" ;;
esac
"""


@pytest.fixture
def fake_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(FAKE_APT)
    apt.chmod(apt.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("FAKE_LISTS", str(tmp_path / "lists"))
    monkeypatch.setenv("FAKE_CHROMIUM", str(tmp_path / "chromium"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return tmp_path


def _calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "log").read_text().splitlines()


def test_an_installed_chromium_is_left_alone(fake_apt: Path) -> None:
    (fake_apt / "chromium").touch()
    assert install_chromium(str(fake_apt / "chromium")) is None
    assert not (fake_apt / "log").exists()


def test_install_runs_update_only_when_the_package_lists_are_missing(fake_apt: Path) -> None:
    assert install_chromium(str(fake_apt / "chromium")) is None
    assert _calls(fake_apt) == ["install -y chromium", "update", "install -y chromium"]
    (fake_apt / "chromium").unlink()
    assert install_chromium(str(fake_apt / "chromium")) is None
    assert _calls(fake_apt)[3:] == ["install -y chromium"]


def test_a_failed_update_is_reported(fake_apt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_UPDATE_FAILS", "1")
    assert (
        install_chromium(str(fake_apt / "chromium")) == "`apt-get update` failed: E: network down"
    )


def test_without_root_or_apt_get_nothing_runs(
    fake_apt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "needs root" in (install_chromium(str(fake_apt / "chromium")) or "")
    monkeypatch.setenv("PATH", str(fake_apt / "nowhere"))
    assert install_chromium(str(fake_apt / "chromium")) == "apt-get is not available"
    assert not (fake_apt / "log").exists()
