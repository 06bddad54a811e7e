"""``--out`` that cannot be written, would destroy an input, or is raced by a second run.

Checked before any work (claim_out); two runs finishing into the same ``--out``: the first
wins, the second is told with one line and exit 2, and no temporary directory is left.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gradleak.errors import GradleakError
from gradleak.outdir import atomic_directory, claim_out, release_claims
from malformed_helpers import _no_long_work, obs, observation_dir, refused  # noqa: F401  (fixtures)

ATTACK = ["--attack", "idlg", "--iterations", "2", "--quiet"]


def test_out_is_an_existing_file(obs, tmp_path, refused):
    out = tmp_path / "out"
    out.write_text("precious")
    code_line = None
    try:
        code_line = refused(["attack", "--observation", obs, *ATTACK, "--out", out], out=None, needle="not a directory")
    finally:
        assert out.read_text() == "precious"
    assert str(out) in code_line


def test_out_below_a_file(obs, tmp_path, refused):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "out"
    refused(["attack", "--observation", obs, *ATTACK, "--out", out], out=None, needle="not a directory")


def test_out_on_a_read_only_file_system(obs, tmp_path, refused):
    out = Path("/proc/gradleak-out")
    refused(["attack", "--observation", obs, *ATTACK, "--out", out], out=None, needle="cannot write")
    assert not out.exists()


def test_out_name_too_long(obs, tmp_path, refused):
    out = tmp_path / ("x" * 300)
    refused(["attack", "--observation", obs, *ATTACK, "--out", out], out=None, needle="too long")
    assert [p.name for p in tmp_path.iterdir()] == ["obs"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere; the read-only file system case covers it")
def test_out_in_a_read_only_directory(obs, tmp_path, refused):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    refused(["attack", "--observation", obs, *ATTACK, "--out", locked / "out"], out=locked / "out",
            needle="cannot write")


def test_out_replacing_its_own_input(obs, tmp_path, refused):
    refused(["attack", "--observation", obs, *ATTACK, "--out", obs], out=None, needle="would replace the input")
    assert (obs / "observation.json").is_file()
    refused(["attack", "--observation", obs, *ATTACK, "--out", tmp_path], out=None, needle="input")
    assert (obs / "observation.json").is_file()


def test_out_is_the_current_directory(obs, tmp_path, refused, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(["attack", "--observation", obs, *ATTACK, "--out", "."], out=None, needle="current directory")
    refused(["attack", "--observation", obs, *ATTACK, "--out", ".."], out=None, needle="current directory")
    assert (obs / "observation.json").is_file()


def test_missing_parents_are_created_only_on_success(tmp_path, refused):
    out = tmp_path / "a" / "b" / "out"
    refused(["observe", "--dataset", "digts", "--model", "lenet", "--quiet", "--out", out], out=out, needle="digits")
    assert not (tmp_path / "a").exists()
    with pytest.raises(RuntimeError):
        with atomic_directory(out) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # no parents, no temporary directory
    with atomic_directory(out) as tmp:
        (tmp / "done").write_text("x")
    assert (out / "done").is_file()


# ------------------------------------------------------------------------------- races
def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_two_runs_same_new_out_first_wins_second_told(tmp_path):
    out = tmp_path / "out"
    first, second = atomic_directory(out), atomic_directory(out)
    a, b = first.__enter__(), second.__enter__()
    (a / "who").write_text("first")
    (b / "who").write_text("second")
    first.__exit__(None, None, None)
    with pytest.raises(GradleakError, match="written by another run meanwhile"):
        second.__exit__(None, None, None)
    assert (out / "who").read_text() == "first"
    assert _hidden(tmp_path) == []


def test_two_runs_replacing_an_old_out_first_wins_second_told(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "who").write_text("old")
    claim_out(out)  # this run starts while an earlier result is there
    try:
        with atomic_directory(tmp_path / "first") as a:  # another run finishes first and replaces it
            (a / "who").write_text("first")
        os.rename(out, tmp_path / "old")
        os.rename(tmp_path / "first", out)
        with pytest.raises(GradleakError, match="written by another run meanwhile"):
            with atomic_directory(out) as b:
                (b / "who").write_text("second")
    finally:
        release_claims()
    assert (out / "who").read_text() == "first"
    assert _hidden(tmp_path) == []


def test_rerun_without_a_race_still_replaces(tmp_path):
    out = tmp_path / "out"
    for who in ("one", "two"):
        claim_out(out)
        with atomic_directory(out) as tmp:
            (tmp / "who").write_text(who)
        release_claims()
    assert (out / "who").read_text() == "two"
    assert _hidden(tmp_path) == []


def test_claimed_out_written_meanwhile_is_told_through_the_cli(obs, tmp_path, capsys, monkeypatch):
    """The CLI path: the observation is claimed at start; another run fills --out; this one is told."""
    from gradleak import cli
    from malformed_helpers import assert_refused, run_cli

    out = tmp_path / "out"
    real = cli.cmd_observe

    def slow_observe(args):
        out.mkdir()
        (out / "config.json").write_text("{}")  # another run finished first
        return real(args)

    monkeypatch.setattr(cli, "cmd_observe", slow_observe)  # build_parser binds the module's function
    code, err = run_cli(["observe", "--dataset", "digits", "--model", "lenet", "--quiet", "--out", out], capsys)
    assert_refused(code, err, out=None, needle="written by another run")
    assert (out / "config.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obs", "out"]  # no temporary directory left
