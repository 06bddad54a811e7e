"""The issue's acceptance commands, run as a user types them.

The iDLG one is fast enough for every run; the IG one (about 2 minutes on 2 cores) is
marked slow: ``pytest -m slow``.
"""

from __future__ import annotations

import json

import pytest

from gradleak.cli import main


def _run(tmp_path, *argv):
    out = tmp_path / "run"
    assert main(["attack", *argv, "--batch-size", "1", "--seed", "0", "--quiet", "--out", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_idlg_histology_lenet(tmp_path):
    metrics = _run(tmp_path, "--dataset", "histology", "--model", "lenet", "--attack", "idlg")
    assert metrics["psnr"] >= 40 and metrics["label_accuracy"] == 1.0


@pytest.mark.slow
def test_ig_histology_convnet(tmp_path):
    metrics = _run(tmp_path, "--dataset", "histology", "--model", "convnet", "--attack", "ig")
    assert metrics["psnr"] >= 25 and metrics["label_accuracy"] == 1.0
