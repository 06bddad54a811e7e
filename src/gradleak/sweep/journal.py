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


class Journal:
    """Append-only JSONL file of cell records keyed by ``record["cell"]``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = self._read_and_repair()

    def _read_and_repair(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
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
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise DataError(f"{self.path}: line {number} is not valid JSON; the results file is corrupt") from None
            if not isinstance(record, dict) or "cell" not in record:
                raise DataError(f"{self.path}: line {number} is not a cell record")
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
