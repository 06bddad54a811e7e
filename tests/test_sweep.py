"""Sweeps: grid parsing, the crash-safe journal, resume after SIGKILL, executors, report."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradleak.cli import main
from gradleak.errors import GradleakError
from gradleak.sweep import Journal, aggregate, load_grid, run_sweep
from gradleak.sweep.grid import parse_grid

TINY = {
    "datasets": ["digits"], "models": ["lenet"],
    "attacks": [{"name": "idlg", "options": {"iterations": 2}}],
    "batch_sizes": [1, 2], "seeds": [0, 1, 2],
}


@pytest.fixture(autouse=True)
def _one_thread():
    """LeNet-sized cells: one thread is as fast unloaded and far faster on a shared machine."""
    import torch

    torch.set_num_threads(1)
    yield


def _write_grid(path: Path, grid: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(grid))
    return path


def test_grid_expands_cartesian_product_with_stable_ids(tmp_path):
    grid = load_grid(_write_grid(tmp_path / "g.yaml", TINY))
    assert len(grid.cells) == 6
    assert len({c.id for c in grid.cells}) == 6
    again = load_grid(_write_grid(tmp_path / "h.yaml", {**TINY, "seeds": [2, 1, 0]}))
    assert {c.id for c in again.cells} == {c.id for c in grid.cells}  # order does not matter


@pytest.mark.parametrize("bad, fragment", [
    ({**TINY, "attacks": ["nope"]}, "nope"),
    ({**TINY, "colour": [1]}, "colour"),
    ({**TINY, "batch_sizes": [0]}, "batch_sizes"),
    ({**TINY, "attacks": [{"name": "idlg", "options": {"itrations": 3}}]}, "itrations"),
    ({"models": ["lenet"], "attacks": ["idlg"]}, "datasets"),
])
def test_bad_grid_is_one_line_error(tmp_path, capsys, bad, fragment):
    code = main(["sweep", str(_write_grid(tmp_path / "g.yaml", bad)), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and fragment in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_grid_file_must_be_yaml_mapping(tmp_path):
    (tmp_path / "g.yaml").write_text("- just\n- a list\n")
    with pytest.raises(GradleakError, match="mapping"):
        load_grid(tmp_path / "g.yaml")
    (tmp_path / "p.yaml").write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(GradleakError, match="not valid YAML"):  # safe_load never builds objects
        load_grid(tmp_path / "p.yaml")


def test_journal_cuts_torn_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"cell": "a", "status": "ok"}\n{"cell": "b", "sta')
    journal = Journal(path)
    assert journal.done == {"a"}
    journal.append({"cell": "c", "status": "ok"})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["cell"] for line in lines] == ["a", "c"]


def test_sweep_killed_with_sigkill_resumes_every_cell_exactly_once(tmp_path):
    grid_path = _write_grid(tmp_path / "grid.yaml", TINY)
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "gradleak.cli", "sweep", str(grid_path), "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if results.exists() and results.read_text().count("\n") >= 2:
            break
        if proc.poll() is not None:
            pytest.fail("sweep finished before it could be killed")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = results.read_text().count("\n")
    assert 2 <= finished_before < 6, "the kill must land halfway"
    with open(results, "a") as handle:  # a write torn by the kill
        handle.write('{"cell": "deadbeef0000", "params"')
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ids = [json.loads(line)["cell"] for line in results.read_text().splitlines()]
    expected = {c.id for c in load_grid(grid_path).cells}
    assert sorted(ids) == sorted(expected)  # every cell exactly once, the torn line gone
    assert all((out / "cells" / i / "metrics.json").is_file() for i in ids)
    assert not list((out / "cells").glob(".*.tmp"))


def test_report_mean_std_over_seeds(tmp_path):
    grid = parse_grid({**TINY, "seeds": [0, 1, 2]})
    journal = Journal(tmp_path / "results.jsonl")
    psnrs = {1: [20.0, 22.0, 27.0], 2: [15.0, 15.5, 16.0]}
    for cell in grid.cells:
        psnr = psnrs[cell.batch_size][cell.seed]
        journal.append({"cell": cell.id, "params": cell.to_json(), "status": "ok",
                        "metrics": {"psnr": psnr, "ssim": 0.5, "label_accuracy": 1.0, "seconds": 1.0}})
    journal.append({"cell": "failed000000", "params": {**grid.cells[0].to_json(), "seed": 9}, "status": "error",
                    "error": "RuntimeError: boom"})
    rows = aggregate(Journal(tmp_path / "results.jsonl").records)
    assert [r["batch_size"] for r in rows] == [1, 2]
    for row in rows:
        values = psnrs[row["batch_size"]]
        mean = sum(values) / 3
        assert row["psnr_mean"] == pytest.approx(mean)
        assert row["psnr_std"] == pytest.approx(math.sqrt(sum((p - mean) ** 2 for p in values) / 2))  # sample std
        assert row["seeds"] == [0, 1, 2]
    assert rows[0]["failed"] == 1
    assert main(["report", str(tmp_path)]) == 0
    for name in ("summary.json", "summary.md", "psnr_vs_batch.png", "report.html"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert "data:image/png;base64," in (tmp_path / "report" / "report.html").read_text()
    assert "23.00 +- 3.61" in (tmp_path / "report" / "summary.md").read_text()


def test_report_of_non_sweep_directory_fails_cleanly(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "results.jsonl" in capsys.readouterr().err


def test_unknown_executor_fails_before_running(tmp_path, capsys):
    grid_path = _write_grid(tmp_path / "g.yaml", TINY)
    assert main(["sweep", str(grid_path), "--out", str(tmp_path / "o"), "--executor", "slurm", "--quiet"]) == 2
    assert "slurm" in capsys.readouterr().err


@pytest.mark.slow  # starting a local Ray costs 10-60 s
def test_ray_executor_runs_the_same_cells(tmp_path):
    pytest.importorskip("ray")
    grid = parse_grid({**TINY, "batch_sizes": [1], "seeds": [0, 1]})
    from gradleak.sweep.run import ExecutorOptions

    local = run_sweep(grid.cells, out=tmp_path / "local")
    remote = run_sweep(grid.cells, out=tmp_path / "ray", executor="ray", options=ExecutorOptions(workers=2))
    by_cell = {r["cell"]: r["metrics"]["psnr"] for r in local.records}
    assert {r["cell"] for r in remote.records} == set(by_cell)
    for r in remote.records:  # same seed, same numbers, whichever executor ran the cell
        assert r["status"] == "ok" and r["metrics"]["psnr"] == pytest.approx(by_cell[r["cell"]], abs=1e-6)


def test_defended_cells_apply_the_defense_on_the_client(tmp_path):
    """Update-level (prune) and computation-level (steps: local SGD) defenses both run in a cell."""
    grid = parse_grid({**TINY, "batch_sizes": [1], "seeds": [0], "defenses": ["none", "prune:0.9", "steps:2"]})
    journal = run_sweep(grid.cells, out=tmp_path)
    by_defense = {r["params"]["defense"]: r for r in journal.records}
    assert set(by_defense) == {"none", "prune:0.9", "steps:2"}
    assert all(r["status"] == "ok" for r in by_defense.values()), by_defense
    for spec, record in by_defense.items():
        config = json.loads((tmp_path / "cells" / record["cell"] / "config.json").read_text())
        assert config["scenario"]["defense"] == (None if spec == "none" else spec)
    assert (tmp_path / "cells" / by_defense["prune:0.9"]["cell"] / "reconstruction.png").is_file()
