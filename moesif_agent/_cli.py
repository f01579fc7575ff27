"""``moesif-agent`` command line: ``collector`` (the local collector), ``check`` and ``demo``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._version import __version__

USAGE = """usage: moesif-agent <command> [options]

commands:
  collector   run the local collector (a Collector API server on SQLite, with a viewer)
  check       say where this app's events would go (MOESIF_* settings) and if they are taken
  demo        run the demo: local collector, instrumented example apps, traffic, summary

  moesif-agent --version   the installed version

Run 'moesif-agent <command> --help' for a command's options.
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if args[0] in ("-V", "--version", "version"):
        sys.stdout.write(f"moesif-agent {__version__}\n")
        return 0
    command, rest = args[0], args[1:]
    if command == "collector":
        try:
            from .collector._cli import main as collector_main
        except ImportError as exc:
            sys.stderr.write(
                f"moesif-agent collector needs the [collector] extra (missing: {exc.name or exc}); "
                "install it with: pip install 'moesif-agent[collector]'\n"
            )
            return 2
        return collector_main(rest)
    if command == "check":
        from ._check import main as check_main

        return check_main(rest)
    if command == "demo":
        from ._demo import main as demo_main

        return demo_main(rest)
    sys.stderr.write(f"moesif-agent: unknown command {command!r}\n\n{USAGE}")
    return 2
