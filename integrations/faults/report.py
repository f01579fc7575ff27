"""What the fault suite measured, kept per session and printed as markdown tables at its end
(``conftest.pytest_terminal_summary``); also written as JSON to ``$MOESIF_FAULTS_RESULTS``
when that variable names a file."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

# table name -> rows (dicts with the same keys, in the order they were added)
TABLES: dict[str, list[dict[str, Any]]] = defaultdict(list)


def add(table: str, **row: Any) -> None:
    TABLES[table].append(row)


def markdown() -> list[str]:
    lines: list[str] = []
    for name, rows in TABLES.items():
        columns = list(dict.fromkeys(key for row in rows for key in row))
        lines += ["", f"### {name}", ""]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for row in rows:
            lines.append("| " + " | ".join(_cell(row.get(column, "")) for column in columns) + " |")
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def write_json() -> None:
    path = os.environ.get("MOESIF_FAULTS_RESULTS")
    if path and TABLES:
        with open(path, "w") as file:
            json.dump(TABLES, file, indent=2)
