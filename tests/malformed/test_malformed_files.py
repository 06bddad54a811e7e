"""Malformed sweep grids, results journals, plugins, model files and prior directories.

Each is a file the test writes; each must be refused with one line naming the problem, exit 2,
before any cell, attack or training runs, with nothing left in ``--out``.
"""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from malformed_helpers import _no_long_work, refused, run_cli  # noqa: F401  (fixtures)

GOOD_GRID = "datasets: [digits]\nmodels: [lenet]\nattacks: [idlg]\n"

GRID_CASES = {
    "grid-not-mapping": (b"- digits\n- lenet\n", "mapping"),
    "grid-empty": (b"", "mapping"),
    "grid-invalid-yaml": (b"datasets: [digits\nmodels: lenet\n", "yaml"),
    "grid-not-utf8": (b"datasets: [\xff\xfe]\n", "utf-8"),
    "grid-key-misspelled": (b"dataset: [digits]\nmodels: [lenet]\nattacks: [idlg]\n", "did you mean 'datasets'"),
    "grid-missing-attacks": (b"datasets: [digits]\nmodels: [lenet]\n", "attacks"),
    "grid-dataset-misspelled": (GOOD_GRID.replace("digits", "digts").encode(), "did you mean 'digits'"),
    "grid-dataset-number": (GOOD_GRID.replace("[digits]", "[5]").encode(), "dataset"),
    "grid-model-misspelled": (GOOD_GRID.replace("[lenet]", "[lenett]").encode(), "did you mean 'lenet'"),
    "grid-attack-misspelled": (GOOD_GRID.replace("[idlg]", "[idgl]").encode(), "did you mean 'idlg'"),
    "grid-attack-option-word": (GOOD_GRID.replace("[idlg]", "[{name: idlg, options: {iterations: abc}}]").encode(),
                                "iterations"),
    "grid-attack-option-float": (GOOD_GRID.replace("[idlg]", "[{name: idlg, options: {iterations: 2.5}}]").encode(),
                                 "iterations"),
    "grid-attack-options-unknown-attack": ((GOOD_GRID + "attack_options: {idgl: {iterations: 5}}\n").encode(),
                                           "did you mean 'idlg'"),
    "grid-batch-string": ((GOOD_GRID + "batch_sizes: ['2']\n").encode(), "batch_sizes"),
    "grid-batch-float": ((GOOD_GRID + "batch_sizes: [1.5]\n").encode(), "batch_sizes"),
    "grid-batch-bool": ((GOOD_GRID + "batch_sizes: [true]\n").encode(), "batch_sizes"),
    "grid-batch-huge": ((GOOD_GRID + "batch_sizes: [100000000]\n").encode(), "batch_sizes"),
    "grid-seed-negative": ((GOOD_GRID + "seeds: [-1]\n").encode(), "seeds"),
    "grid-defense-number": ((GOOD_GRID + "defenses: [5]\n").encode(), "defense"),
    "grid-defense-misspelled": ((GOOD_GRID + "defenses: ['noize:0.1']\n").encode(), "did you mean 'noise'"),
    "grid-scenario-image-size-string": ((GOOD_GRID + "scenario: {image_size: '16'}\n").encode(), "image_size"),
    "grid-scenario-train-mode-string": ((GOOD_GRID + "scenario: {train_mode: 'yes'}\n").encode(), "train_mode"),
    "grid-scenario-lr-zero": ((GOOD_GRID + "scenario: {local_lr: 0}\n").encode(), "local_lr"),
    "grid-scenario-protocol-misspelled": ((GOOD_GRID + "scenario: {protocol: fedsdg}\n").encode(), "fedsgd"),
    "grid-scenario-key-misspelled": ((GOOD_GRID + "scenario: {image_szie: 16}\n").encode(), "did you mean 'image_size'"),
    "grid-scenario-model-option": ((GOOD_GRID + "scenario: {model_options: {init: bogus}}\n").encode(), "init"),
    "grid-scenario-not-mapping": ((GOOD_GRID + "scenario: [1, 2]\n").encode(), "scenario"),
}


@pytest.mark.parametrize("text,needle", list(GRID_CASES.values()), ids=list(GRID_CASES))
def test_malformed_grid(tmp_path, refused, text, needle):
    grid = tmp_path / "grid.yaml"
    grid.write_bytes(text)
    out = tmp_path / "sweep"
    refused(["sweep", grid, "--quiet", "--out", out], out=out, needle=needle)


def test_grid_path_is_a_directory(tmp_path, refused):
    out = tmp_path / "sweep"
    refused(["sweep", tmp_path, "--quiet", "--out", out], out=out, needle="not a file")


# ------------------------------------------------------------------------ results journal
def _record(**changes):
    params = {"dataset": "digits", "model": "lenet", "attack": "idlg", "batch_size": 1, "defense": "none", "seed": 0,
              "attack_options": {}, "scenario": {}}
    record = {"cell": "abc123", "params": params, "status": "ok", "metrics": {"psnr": 30.0, "ssim": 0.9}}
    for key, value in changes.items():
        if key.startswith("params_"):
            params[key.removeprefix("params_")] = value
        else:
            record[key] = value
    return (json.dumps(record) + "\n").encode()


JOURNAL_CASES = {
    "journal-not-json": (b"{not json\n", "not valid json"),
    "journal-not-utf8": (b'{"cell": "\xff"}\n', "not valid json"),
    "journal-list-line": (b"[1, 2]\n", "not a cell record"),
    "journal-no-cell": (b'{"status": "ok"}\n', "cell"),
    "journal-cell-list": (_record(cell=["a", "b"]), "cell"),
    "journal-metrics-list": (_record(metrics=[1, 2]), "metrics"),
    "journal-params-missing": (_record(params=None), "params"),
    "journal-batch-string": (_record(params_batch_size="2"), "batch_size"),
    "journal-seed-missing": (_record(params_seed=None), "seed"),
    "journal-psnr-string": (_record(metrics={"psnr": "high"}), "psnr"),
    "journal-status-number": (_record(status=1), "status"),
}


@pytest.mark.parametrize("line,needle", list(JOURNAL_CASES.values()), ids=list(JOURNAL_CASES))
def test_malformed_journal_report(tmp_path, refused, line, needle):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "results.jsonl").write_bytes(line)
    refused(["report", sweep], out=sweep / "report", needle=needle)


def test_malformed_journal_on_resume(tmp_path, refused):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GOOD_GRID + "attack_options: {idlg: {iterations: 1}}\n")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "results.jsonl").write_bytes(_record(cell=7))
    refused(["sweep", grid, "--quiet", "--out", sweep], out=None, needle="cell")
    assert sorted(p.name for p in sweep.iterdir()) == ["results.jsonl"]


def test_journal_is_a_directory(tmp_path, refused):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GOOD_GRID)
    sweep = tmp_path / "sweep"
    (sweep / "results.jsonl").mkdir(parents=True)
    refused(["sweep", grid, "--quiet", "--out", sweep], out=None, needle="not a file")
    assert sorted(p.name for p in sweep.iterdir()) == ["results.jsonl"]


# -------------------------------------------------------------------------------- plugins
PLUGIN_CASES = {
    "plugin-sys-exit": ("import sys\nsys.exit(3)\n", "sys.exit(3)"),
    "plugin-sys-exit-zero": ("import sys\nsys.exit(0)\n", "sys.exit(0)"),
    "plugin-raises-systemexit": ("raise SystemExit('bye')\n", "sys.exit"),
    "plugin-syntax-error": ("def broken(:\n", "SyntaxError"),
    "plugin-raises": ("raise RuntimeError('no GPU here')\n", "no GPU here"),
    "plugin-imports-missing": ("import gradleak_no_such_module\n", "ModuleNotFoundError"),
}


@pytest.mark.parametrize("code,needle", list(PLUGIN_CASES.values()), ids=list(PLUGIN_CASES))
def test_malformed_plugin(tmp_path, refused, code, needle):
    plugin = tmp_path / f"plugin_{abs(hash(code))}.py"
    plugin.write_text(code)
    out = tmp_path / "audit"
    line = refused(["audit", "--plugin", plugin, "--budget", "quick", "--quiet", "--out", out], out=out, needle=needle)
    assert "plugin" in line


def test_plugin_missing_file_and_module(tmp_path, refused):
    out = tmp_path / "audit"
    refused(["audit", "--plugin", tmp_path / "nope.py", "--quiet", "--out", out], out=out, needle="no such file")
    refused(["audit", "--plugin", "gradleak_no_such_plugin", "--quiet", "--out", out], out=out, needle="plugin")


# ---------------------------------------------------------------- inspect: received model files
def _model_file(tmp_path, *, spec=None, tensors=None):
    path = tmp_path / "model.safetensors"
    save_file(tensors or {"fc.weight": torch.zeros(4, 3), "fc.bias": torch.zeros(4)}, path)
    if spec is not None:
        path.with_suffix(".json").write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return path


SPEC = {"name": "lenet", "input_shape": [1, 8, 8], "num_classes": 10, "options": {}}
INSPECT_CASES = {
    "model-file-pickle": (lambda p: p.write_bytes(pickle.dumps({"w": 1})), "pickle"),
    "model-file-torch-zip": (lambda p: torch.save({"w": torch.zeros(2)}, p), "zip"),
    "model-file-truncated": (lambda p: p.write_bytes(p.read_bytes()[:40]), "safetensors"),
    "model-file-text": (lambda p: p.write_text("hello world, not tensors"), "safetensors"),
    "spec-not-json": (lambda p: p.with_suffix(".json").write_text("{nope"), "json"),
    "spec-not-utf8": (lambda p: p.with_suffix(".json").write_bytes(b"\xff\xfe"), "json"),
    "spec-name-misspelled": (lambda p: p.with_suffix(".json").write_text(json.dumps({**SPEC, "name": "lenett"})),
                             "did you mean 'lenet'"),
    "spec-shape-string": (lambda p: p.with_suffix(".json").write_text(json.dumps({**SPEC, "input_shape": "1,8,8"})),
                          "input_shape"),
    "spec-classes-float": (lambda p: p.with_suffix(".json").write_text(json.dumps({**SPEC, "num_classes": 2.5})),
                           "num_classes"),
    "spec-does-not-fit": (lambda p: p.with_suffix(".json").write_text(json.dumps(SPEC)), ("missing", "fit", "shape")),
}


@pytest.mark.parametrize("damage,needle", list(INSPECT_CASES.values()), ids=list(INSPECT_CASES))
def test_malformed_model_file(tmp_path, refused, damage, needle):
    path = _model_file(tmp_path)
    damage(path)
    out = tmp_path / "out"
    refused(["inspect", "--model-file", path, "--out", out], out=out, needle=needle)


def test_model_file_is_a_directory(tmp_path, refused):
    out = tmp_path / "out"
    refused(["inspect", "--model-file", tmp_path, "--out", out], out=out, needle="not a file")


# ------------------------------------------------------------------------- prior directories
def _prior(tmp_path, meta):
    prior = tmp_path / "prior"
    prior.mkdir()
    (prior / "prior.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return prior


PRIOR_CASES = {
    "prior-not-json": ("{oops", "json"),
    "prior-wrong-format": ({"format": "something"}, "format"),
    "prior-arch-misspelled": ({"format": "gradleak-prior/1", "generator": {"arch": "dcgna", "shape": [1, 8, 8]}},
                              "did you mean 'dcgan'"),
    "prior-shape-string": ({"format": "gradleak-prior/1", "generator": {"arch": "dcgan", "shape": "1,8,8"}}, "shape"),
    "prior-latent-float": ({"format": "gradleak-prior/1",
                            "generator": {"arch": "dcgan", "shape": [1, 8, 8], "latent_dim": 6.5}}, "latent_dim"),
}


@pytest.mark.parametrize("meta,needle", list(PRIOR_CASES.values()), ids=list(PRIOR_CASES))
def test_malformed_prior(tmp_path, refused, meta, needle):
    prior = _prior(tmp_path, meta)
    out = tmp_path / "out"
    refused(["attack", "--dataset", "digits", "--model", "lenet", "--attack", "giz", "--prior", prior, "--quiet",
             "--out", out], out=out, needle=needle)
