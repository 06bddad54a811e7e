"""Shared pieces of the malformed-input suite: one tiny observation, an in-process CLI runner,
the refusal contract every case must meet (DESIGN.md section 3), and file-surgery helpers.

Not a conftest.py: the top-level tests import ``conftest`` by name, which a second one would shadow.
Test modules import the fixtures from here.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

from gradleak.cli import main

OBS_JSON = "observation.json"
OBS_TENSORS = "observation.safetensors"

ERROR_LINE = re.compile(r"^gradleak( [\w-]+)*: error: \S")


@pytest.fixture(scope="session")
def observation_dir(tmp_path_factory) -> Path:
    """A valid observation (digits, LeNet, batch 2, labels shared) with its ground truth, made once."""
    out = tmp_path_factory.mktemp("fixture") / "obs"
    assert main(["observe", "--dataset", "digits", "--model", "lenet", "--batch-size", "2", "--share-labels",
                 "--quiet", "--out", str(out)]) == 0
    return out


@pytest.fixture
def obs(tmp_path, observation_dir) -> Path:
    """A private copy of the observation for one case to damage."""
    target = tmp_path / "obs"
    shutil.copytree(observation_dir, target)
    return target


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """``gradleak.cli.main`` in-process; argparse's exits become return codes."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, *, out: Path | None, needle: str | tuple[str, ...]) -> str:
    """Exit 2, exactly one ``gradleak ...: error:`` line naming the problem, no traceback, no --out."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert ERROR_LINE.match(lines[0]), lines[0]
    needles = (needle,) if isinstance(needle, str) else needle
    assert any(n.lower() in lines[0].lower() for n in needles), (needles, lines[0])
    if out is not None:
        assert not out.exists(), f"{out} was left behind"
        if out.parent.exists():
            leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
            assert not leftovers, leftovers
    return lines[0]


@pytest.fixture
def refused(capsys):
    """``refused(argv, out=..., needle=...)``: run the CLI and check the refusal contract."""

    def check(argv: list[Any], *, out: Path | None, needle: str | tuple[str, ...]) -> str:
        code, err = run_cli(argv, capsys)
        return assert_refused(code, err, out=out, needle=needle)

    return check


@pytest.fixture(autouse=True)
def _no_long_work(monkeypatch):
    """Bad input must be refused before any attack runs: reaching one fails the case at once."""

    def accepted(*_args, **_kwargs):
        raise AssertionError("the malformed input was accepted: the attack started")

    monkeypatch.setattr("gradleak.runner.run_attack", accepted)


# ------------------------------------------------------------------ file surgery helpers
def edit_json(path: Path, change: Callable[[dict], Any]) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def edit_tensors(path: Path, change: Callable[[dict], Any]) -> None:
    tensors = load_file(path)
    change(tensors)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)


def first_update_key(tensors: dict[str, torch.Tensor]) -> str:
    return sorted(k for k in tensors if k.startswith("update/"))[0]
