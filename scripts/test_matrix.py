"""The versions we claim are the versions we test: the in-process suites (``tests/``) under each
supported Python, with the lowest framework versions pyproject.toml declares and with the
newest.

    python scripts/test_matrix.py                      # 3.10 and 3.13, lowest and newest
    python scripts/test_matrix.py --python 3.13 --set lowest
    python scripts/test_matrix.py --dry-run            # print what each venv would install

With ``--head`` the runs use a clean export of the last commit (``git archive HEAD``) instead
of the working tree, so that others' uncommitted edits in a shared checkout do not count.

The "lowest" set pins every ``>=`` bound of the core dependencies and of the framework
extras (evaluated for that Python: a bound may differ per Python through a marker) to exactly
that version; the "newest" set installs the newest of everything. FastAPI is not a bound we
declare (the [starlette] extra covers it), so both sets take the newest FastAPI their
Starlette allows. Each venv lives in ``.matrix/`` and is reused while its requirements are
unchanged. Interpreters are found on PATH (``python3.13``) or under ``~/.pyenv/versions``.
Exit status 0 when every run passed.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10: pytest brings tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / ".matrix"
PYTHONS = ("3.10", "3.13")
SETS = ("lowest", "newest")
EXTRAS = ("flask", "django", "starlette", "collector")
TEST_TOOLS = ("pytest>=8", "pytest-timeout>=2.2", "hypothesis>=6.100", "requests>=2.31")
# FastAPI versions that know Starlette 0.27 and later: pip takes the newest that fits.
FASTAPI = "fastapi>=0.95"
SHOWN = ("django", "asgiref", "flask", "werkzeug", "starlette", "fastapi", "uvicorn", "httpx")

# Tests that cannot pass below a version of a framework we still support, each with why. They
# are deselected only when that framework is older (they run everywhere else), and the summary
# says how many were. The adapters' owners may close a gap; then its entry goes.
KNOWN_GAPS: list[tuple[str, str, str, tuple[str, ...]]] = [
    (
        "starlette",
        "0.44",
        "add_middleware(cls, options) builds cls(options, app=app) before 0.44: options must be "
        "given as settings= (the README's form)",
        (
            "tests/integrations/test_asgi.py::test_mount_prefix_head_and_empty_responses",
            "tests/integrations/test_asgi.py::test_skip_callback_sees_the_response",
            "tests/integrations/test_mask_callback.py::test_asgi_and_starlette[starlette]",
        ),
    ),
    (
        "starlette",
        "1.7",
        "TestClient uses anyio.abc.BlockingPortal, which anyio 4 deprecates (an error here)",
        (
            "tests/integrations/test_hostile_adapters.py::test_11_starlettes_exception_in"
            "_middleware_still_raises_when_wrapped",
        ),
    ),
]


@dataclass
class Run:
    python: str
    kind: str
    source: Path = ROOT
    interpreter: str = ""
    requirements: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    outcome: str = ""
    ok: bool = False
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"py{self.python}-{self.kind}"


def declared_bounds(python: str, source: Path) -> list[str]:
    """``name==X`` for every ``name>=X`` the package declares for this Python."""
    with (source / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    declared = list(project["dependencies"])
    for extra in EXTRAS:
        declared += project["optional-dependencies"][extra]
    environment = {"python_version": python, "python_full_version": python + ".0"}
    pins: dict[str, str] = {}
    for text in declared:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        for spec in requirement.specifier:
            if spec.operator == ">=":
                pins[requirement.name.lower()] = f"{requirement.name}=={spec.version}"
    return sorted(pins.values())


def export_head() -> Path:
    """The last commit's files in .matrix/head (replaced on each run)."""
    head = MATRIX / "head"
    if head.exists():
        shutil.rmtree(head)
    head.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True)
    archive.check_returncode()
    subprocess.run(["tar", "-x", "-C", str(head)], input=archive.stdout, check=True)
    return head


def find_python(version: str) -> str | None:
    candidates = [shutil.which(f"python{version}") or ""]
    home = os.path.expanduser("~/.pyenv/versions")
    candidates += sorted(glob.glob(f"{home}/{version}.*/bin/python{version}"), reverse=True)
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def plan(run: Run) -> None:
    package = f"-e {run.source}[{','.join(EXTRAS)}]"
    pins = declared_bounds(run.python, run.source) if run.kind == "lowest" else []
    run.requirements = [package, *pins, FASTAPI, *TEST_TOOLS]


def install(run: Run, log: Path, fresh: bool) -> bool:
    venv = MATRIX / run.name
    stamp = venv / "requirements.txt"
    # pyproject.toml's digest too: a new dependency there means a new venv
    digest = hashlib.sha256((run.source / "pyproject.toml").read_bytes()).hexdigest()
    wanted = "\n".join([*run.requirements, f"# pyproject.toml {digest}"]) + "\n"
    if not fresh and stamp.exists() and stamp.read_text() == wanted:
        return True
    if venv.exists():
        shutil.rmtree(venv)
    steps = [
        [run.interpreter, "-m", "venv", str(venv)],
        [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(venv / "bin/python"), "-m", "pip", "install", "--quiet"]
        + [part for requirement in run.requirements for part in requirement.split(" ", 1)],
    ]
    with log.open("a") as out:
        for step in steps:
            out.write("$ " + " ".join(step) + "\n")
            out.flush()
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                return False
    stamp.write_text(wanted)
    return True


def installed(run: Run) -> dict[str, str]:
    listing = subprocess.run(
        [str(MATRIX / run.name / "bin/python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    versions = {item["name"].lower(): item["version"] for item in json.loads(listing.stdout)}
    return {name: versions[name] for name in SHOWN if name in versions}


def known_gaps(run: Run) -> list[str]:
    """The node ids of KNOWN_GAPS that apply to the versions this venv has."""
    ids = []
    for package, below, _why, tests in KNOWN_GAPS:
        version = run.versions.get(package)
        if version is not None and Version(version) < Version(below):
            ids += tests
    return ids


def test(run: Run, log: Path) -> tuple[bool, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOESIF_", "PYTHON"))}
    env.pop("VIRTUAL_ENV", None)
    command = [
        str(MATRIX / run.name / "bin/python"),
        "-m",
        "pytest",
        "tests",
        "-m",
        "not slow",
        "-q",
        "-p",
        "no:cacheprovider",
        *(f"--deselect={node}" for node in known_gaps(run)),
    ]
    with log.open("a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        done = subprocess.run(
            command, cwd=run.source, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    summary = next((line for line in reversed(lines) if re.search(r" in [\d.]+s", line)), "")
    return done.returncode == 0, summary.strip("= ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", help=f"default: {' '.join(PYTHONS)}")
    parser.add_argument("--set", action="append", choices=SETS, help="default: both")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    parser.add_argument(
        "--fresh", action="store_true", help="rebuild the venvs (the newest set: new releases)"
    )
    parser.add_argument(
        "--head", action="store_true", help="test the last commit, not the working tree"
    )
    args = parser.parse_args()
    source = export_head() if args.head else ROOT
    runs = [Run(p, s, source) for p in args.python or PYTHONS for s in args.set or SETS]
    for run in runs:
        plan(run)
    if args.dry_run:
        for run in runs:
            say(f"{run.name}: " + " ".join(run.requirements))
        return 0
    MATRIX.mkdir(exist_ok=True)
    for run in runs:
        interpreter = find_python(run.python)
        if interpreter is None:
            run.outcome = f"no Python {run.python} (python{run.python} on PATH or pyenv)"
            say(f"{run.name}: {run.outcome}")
            continue
        run.interpreter = interpreter
        log = MATRIX / f"{run.name}.log"
        log.write_text("")
        started = time.monotonic()
        say(f"{run.name}: installing ({log.relative_to(ROOT)})")
        if not install(run, log, args.fresh):
            run.outcome = "install failed, see " + str(log.relative_to(ROOT))
        else:
            run.versions = installed(run)
            say(f"{run.name}: testing with {_versions(run)}")
            run.ok, run.outcome = test(run, log)
        run.seconds = time.monotonic() - started
        say(f"{run.name}: {run.outcome} ({run.seconds:.0f} s)")
    say("\ntest matrix (tests/, -m 'not slow'):")
    for run in runs:
        mark = "ok  " if run.ok else "FAIL"
        gaps = f" (known gaps: {len(known_gaps(run))} deselected)" if known_gaps(run) else ""
        say(f"  {mark} {run.name:<14} {run.seconds:>5.0f} s  {run.outcome}{gaps}")
        if run.versions:
            say(f"       {_versions(run)}")
    return 0 if all(run.ok for run in runs) else 1


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _versions(run: Run) -> str:
    return ", ".join(f"{name} {version}" for name, version in run.versions.items())


if __name__ == "__main__":
    sys.exit(main())
