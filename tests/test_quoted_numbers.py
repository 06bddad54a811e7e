"""Numbers quoted as measured in README.md and docs/*.md must come from the results files.

The convention (README, "Benchmarks"):

* A **measured block** is a Markdown heading whose title starts with "Measured" (the block runs
  to the next heading of the same or a higher level), or a paragraph or list item whose text
  starts with "Measured" (or "**Measured**"); a paragraph ending in ":" runs on to the next
  heading (the list or table it introduces).
* The block names the results it quotes: every ``benchmarks/results/...`` path in it (a file, or
  a directory: its ``.json``, ``.jsonl``, ``.md`` files). A block naming none fails.
* Every number in the block's prose (outside code spans and fenced code; not part of a word
  such as ``b1`` or ``cnn6``, of a path or of a date) must equal a number in those files to the
  precision it is written with (``0.985`` matches 0.9851; ``3.9e-10`` matches 3.88e-10). A
  number followed by ``%`` may also be a fraction in the files (``91 %`` matches 0.906).
  Settings and counts (``batch 1``, ``3 seeds``) are expected in the files too.
* A paper's own numbers are quoted in a list item, table row or paragraph that starts with
  "Published" (or "**Published**"); they are not ours, so they are not checked.

Run ``python tests/test_quoted_numbers.py`` to list every unmatched number.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RESULT_SUFFIXES = (".json", ".jsonl", ".md")

HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
MEASURED = re.compile(r"^(?:[-*]\s+)?(?:\*\*)?Measured\b")
RESULTS_PATH = re.compile(r"benchmarks/results/[A-Za-z0-9_./-]*[A-Za-z0-9_/-]")
# a number not glued to a word, a path or a version: "0.985", "3.9e-10", "1,000", "-0.5"
NUMBER = re.compile(r"(?<![\w./:])(?<![A-Za-z_]-)(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w/]|\.\d|-\d{2}-)(\s*%|(?=[-–]\d+(?:\.\d+)?\s*%))?")
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
CODE_SPAN = re.compile(r"`[^`]*`")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
TEXT_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass
class Block:
    """One measured block of a document."""

    document: Path
    line: int  # 1-based line of its first line
    title: str
    lines: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line} ({self.title[:60]})"


def measured_blocks(path: Path) -> list[Block]:
    """The measured blocks of a Markdown file (see the module docstring)."""
    blocks: list[Block] = []
    fenced = False
    heading: tuple[int, Block] | None = None  # (level, block) of an open "Measured" heading
    paragraph: Block | None = None  # an open "Measured" paragraph or list item
    runs_on = False  # that paragraph ended in ":": it runs to the next heading
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = HEADING.match(line) if not fenced else None
        if match:
            level, paragraph = len(match.group(1)), None
            if heading is not None and level <= heading[0]:
                heading = None
            if heading is None and match.group(2).startswith("Measured"):
                heading = (level, Block(path, number, line.strip(), [line]))
                blocks.append(heading[1])
            elif heading is not None:
                heading[1].lines.append(line)  # a sub-heading belongs to the block
            continue
        if heading is not None:
            heading[1].lines.append(line)
            continue
        if paragraph is not None and not runs_on:
            blank = not line.strip()
            next_item = (line.lstrip()[:2] in ("- ", "* ") and paragraph.title[:2] in ("- ", "* ")
                         and _indent(line) <= _indent(paragraph.lines[0]))
            if blank and paragraph.lines[-1].rstrip().endswith(":"):
                runs_on = True
            elif blank or next_item:
                paragraph = None  # a blank line ends a paragraph; the next list item ends a list item
        if paragraph is None and not fenced and MEASURED.match(line.strip()):
            paragraph, runs_on = Block(path, number, line.strip()), False
            blocks.append(paragraph)
        if paragraph is not None:
            paragraph.lines.append(line)
    return blocks


PUBLISHED = re.compile(r"^(?:[-*|]\s*)?(?:\*\*)?Published\b")
NEW_ITEM = re.compile(r"^(?:[-*]\s|\|)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def prose(lines: list[str]) -> Iterator[tuple[int, str]]:
    """(offset, text) of each line outside fenced code and "Published" items; code spans,
    link targets and dates removed."""
    fenced = published = False
    for offset, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        stripped = line.strip()
        if not stripped or NEW_ITEM.match(stripped):
            published = False  # a blank line, a new list item or a table row ends a quoted item
        published = published or bool(PUBLISHED.match(stripped))
        if not fenced and not published:
            yield offset, DATE.sub(" ", LINK_TARGET.sub("]", CODE_SPAN.sub(" ", line)))


@dataclass(frozen=True)
class Quote:
    text: str  # as written, e.g. "3.9e-10"
    value: float
    half_unit: float  # half of the last written digit's unit: the stated precision
    percent: bool


def quote(text: str, percent: bool) -> Quote:
    plain = text.replace(",", "")
    mantissa, _, exponent = plain.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    scale = 10.0 ** (int(exponent) if exponent else 0)
    return Quote(text, float(plain), 0.5 * scale * 10.0 ** -decimals, percent)


def quoted_numbers(block: Block) -> list[tuple[int, Quote]]:
    out = []
    for offset, text in prose(block.lines):
        for match in NUMBER.finditer(text):
            out.append((block.line + offset, quote(match.group(1), match.group(2) is not None)))
    return out


def source_paths(block: Block) -> list[Path]:
    """The results files a block names (directories expand to their result files)."""
    paths: list[Path] = []
    for text in block.lines:
        for name in RESULTS_PATH.findall(text):
            path = ROOT / name.rstrip("/.")
            if path.is_dir():
                paths += sorted(p for p in path.rglob("*") if p.suffix in RESULT_SUFFIXES)
            elif path.is_file():
                paths.append(path)
            else:
                raise AssertionError(f"{block.where}: names {name}, which does not exist")
    return list(dict.fromkeys(paths))


def _json_numbers(value: Any) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, str):
        yield from (float(t) for t in TEXT_NUMBER.findall(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from (float(t) for t in TEXT_NUMBER.findall(str(key)))
            yield from _json_numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_numbers(item)


_CACHE: dict[Path, list[float]] = {}


def file_numbers(path: Path) -> list[float]:
    """Every number in a results file: JSON values (and numbers inside its strings), or, for
    text, every number written in it."""
    if path not in _CACHE:
        text = path.read_text()
        values: list[float] = [float(t) for t in TEXT_NUMBER.findall(text)]
        if path.suffix == ".json":
            values += list(_json_numbers(json.loads(text)))
        elif path.suffix == ".jsonl":
            for line in text.splitlines():
                if line.strip():
                    values += list(_json_numbers(json.loads(line)))
        _CACHE[path] = sorted({v for v in values if math.isfinite(v)})
    return _CACHE[path]


def found(q: Quote, values: list[float]) -> bool:
    """Whether ``q`` equals one of ``values`` to its stated precision (a little slack for the
    source's own rounding when it was written as text)."""
    targets = [q.value] + ([q.value / 100] if q.percent else [])
    for target, half in zip(targets, [q.half_unit, q.half_unit / 100]):
        for sign in (1.0, -1.0):
            t = sign * target
            if any(abs(v - t) <= half * 1.0001 + 1e-12 * abs(t) for v in values):
                return True
    return False


def unmatched(block: Block) -> list[str]:
    sources = source_paths(block)
    if not sources:
        return [f"{block.where}: names no benchmarks/results/... file"]
    values = sorted({v for p in sources for v in file_numbers(p)})
    return [f"{block.document.relative_to(ROOT)}:{line}: {q.text}{' %' if q.percent else ''} is not in "
            f"{', '.join(str(p.relative_to(ROOT)) for p in sources)[:200]}"
            for line, q in quoted_numbers(block) if not found(q, values)]


ALL_BLOCKS = [b for doc in DOCUMENTS for b in measured_blocks(doc)]


# ------------------------------------------------------------------------------- tests
def test_the_parser_finds_blocks_numbers_and_precision(tmp_path: Path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text("# T\n\nMeasured (`benchmarks/results/x.json`): FMSE 3.9e-10 at batch 1, 91 %.\n"
                   "same paragraph 0.985 `--option k=7` b1 cnn6 on 2026-12-03.\n\nNot measured: 42.\n\n"
                   "Measured too (benchmarks/results/y.md):\n\n- Published: 0.98 at 128\n  and 2024\n- ours 0.5\n\n"
                   "## Measured here\n\n| a | 1.50 ± 0.2 |\n\n### sub 5\n\n## Other\n\n77\n")
    blocks = measured_blocks(doc)
    assert [b.line for b in blocks] == [3, 8, 14]
    texts = [q.text for b in blocks for _, q in quoted_numbers(b)]
    assert texts == ["3.9e-10", "1", "91", "0.985", "0.5", "1.50", "0.2", "5"]
    q = quote("3.9e-10", False)
    assert found(q, [3.88e-10]) and not found(q, [3.8e-10])
    assert found(quote("0.985", False), [0.9851]) and not found(quote("0.985", False), [0.9862])
    assert found(quote("91", True), [0.906]) and not found(quote("91", False), [0.906])
    ranged = Block(doc, 1, "Measured", ["96-100 % of 7"])
    assert [(q.text, q.percent) for _, q in quoted_numbers(ranged)] == [("96", True), ("100", True), ("7", False)]
    assert found(quote("113", False), [113.4]) and not found(quote("113", False), [124.0])


def test_every_measured_block_is_found() -> None:
    assert len(ALL_BLOCKS) >= 5, [b.where for b in ALL_BLOCKS]


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: f"{b.document.name}:{b.line}")
def test_quoted_numbers_are_in_their_results(block: Block) -> None:
    problems = unmatched(block)
    assert not problems, "\n".join(problems)


if __name__ == "__main__":
    for measured in ALL_BLOCKS:
        for problem in unmatched(measured):
            print(problem)
