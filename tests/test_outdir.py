"""Atomic output directories: complete or absent, and as readable as any directory the user makes."""

from __future__ import annotations

import os
import stat

import pytest

from gradleak.outdir import atomic_directory


def test_success_moves_into_place_with_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "out") as tmp:
            (tmp / "a.txt").write_text("x")
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert (out / "a.txt").read_text() == "x"
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no hidden leftovers


def test_failure_leaves_nothing_and_keeps_the_previous_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_directory(out) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
