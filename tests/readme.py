"""The README's sections and code blocks, so tests run what users copy."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"

# The local quickstart's addresses, which tests move to free ports.
COLLECTOR_PORT = 8787
APP_PORT = 5000


def section(title: str) -> str:
    """The text of ``## title``, up to the next ``## `` heading."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of one language, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.S | re.M)


def block_starting(text: str, language: str, first_line: str) -> str:
    """The one block of ``language`` whose first line is ``first_line``."""
    (found,) = [b for b in blocks(text, language) if b.splitlines()[0] == first_line]
    return found


def shell_lines(text: str) -> list[str]:
    """The commands of the section's ``sh`` blocks, without comments, in order."""
    lines = []
    for block in blocks(text, "sh"):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].rstrip()
            if command and not command.startswith("#"):
                lines.append(command)
    return lines


def with_ports(text: str, collector: int, app: int) -> str:
    """The quickstart with its two addresses moved to ``collector`` and ``app``."""
    text = text.replace(f":{COLLECTOR_PORT}", f":{collector}")
    text = text.replace(f"--port {COLLECTOR_PORT}", f"--port {collector}")
    return text.replace(f"--port {APP_PORT}", f"--port {app}").replace(f":{APP_PORT}", f":{app}")
