"""Shared by the benchmarks: finished runs appended to a JSON-lines cache, read back on resume."""

from __future__ import annotations

import json
from pathlib import Path


def append_row(path: Path, row: dict) -> None:
    """Append one finished run to ``path`` (and echo it), so an interrupted benchmark resumes."""
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def load_rows(path: Path) -> list[dict]:
    """Every run cached in ``path`` (none when it does not exist yet)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
