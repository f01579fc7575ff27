"""scripts/test_matrix.py: its "lowest" set is exactly the bounds pyproject.toml declares, and
the known gaps it deselects still name tests that exist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("packaging")

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "test_matrix.py"


def plan(*args: str) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    runs = {}
    for line in done.stdout.splitlines():
        name, requirements = line.split(": ", 1)
        runs[name] = requirements.split()
    return runs


def test_the_lowest_set_pins_every_declared_bound_and_the_newest_pins_none() -> None:
    runs = plan()
    assert set(runs) == {"py3.10-lowest", "py3.10-newest", "py3.13-lowest", "py3.13-newest"}
    lowest = [r for r in runs["py3.10-lowest"] if "==" in r]
    names = {r.split("==")[0].lower() for r in lowest}
    assert {"django", "flask", "werkzeug", "starlette", "httpx", "uvicorn", "asgiref"} <= names
    assert not [r for r in runs["py3.10-newest"] if "==" in r]
    # the same numbers as pyproject.toml's ">=" bounds
    pyproject = (ROOT / "pyproject.toml").read_text()
    for requirement in lowest:
        name, version = requirement.split("==")
        assert f'"{name}>={version}' in pyproject


def test_every_known_gap_names_an_existing_test() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import test_matrix
    finally:
        sys.path.remove(str(SCRIPT.parent))
    for _package, _below, why, nodes in test_matrix.KNOWN_GAPS:
        assert why
        for node in nodes:
            path, name = node.split("::", 1)
            source = (ROOT / path).read_text()
            assert f"def {name.split('[')[0]}(" in source, node
