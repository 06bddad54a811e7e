"""The sweep's results file: append-only JSON lines, one per finished cell, fsync'ed.

A crash (even SIGKILL) can at worst leave one partial last line; it is cut off when the
journal is opened again, so every finished cell appears exactly once and nothing is lost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..outdir import _finite


# Fields of a cell record and the JSON type each must have when present ("cell" always is).
RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "cell": str, "status": str, "params": dict, "metrics": dict, "error": str, "version": str,
    "wall_seconds": (int, float),
}


def _record_problem(record: Any) -> str:
    """What is wrong with a journal line's record ("" when nothing is)."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    if "cell" not in record:
        return "no 'cell' id"
    for key, kind in RECORD_FIELDS.items():
        value = record.get(key)
        if key in record and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"{key!r} is {value!r}"
    return ""


class Journal:
    """Append-only JSONL file of cell records keyed by ``record["cell"]``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = self._read_and_repair()

    def _read_and_repair(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        if not self.path.is_file():
            raise DataError(f"{self.path} is not a file; the results journal must be one")
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
        if end < len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(end)
                handle.flush()
                os.fsync(handle.fileno())
        records = []
        for number, line in enumerate(data[:end].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                raise DataError(f"{self.path}: line {number} is not valid JSON; the results file is corrupt") from None
            problem = _record_problem(record)
            if problem:
                raise DataError(f"{self.path}: line {number} is not a cell record ({problem})")
            records.append(record)
        return records

    @property
    def done(self) -> set[str]:
        return {r["cell"] for r in self.records}

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as a single line and fsync it before returning."""
        line = (json.dumps(_finite(record), sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self.records.append(record)
