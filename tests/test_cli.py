"""The command line as a user runs it: outputs, metrics, and one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from safetensors.torch import load_file, save_file

from gradleak.cli import main

FAST = ["--dataset", "digits", "--model", "lenet", "--batch-size", "1", "--seed", "0"]


def _attack(tmp_path, *extra, name="run"):
    out = tmp_path / name
    code = main(["attack", *FAST, "--attack", "idlg", "--iterations", "30", "--quiet", "--out", str(out), *extra])
    return code, out


def _one_line_error(capsys, code):
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", ["datasets", "models", "attacks"])
def test_listings(capsys, command):
    assert main([command]) == 0
    out = capsys.readouterr().out
    assert {"datasets": "histology", "models": "convnet", "attacks": "idlg"}[command] in out


def test_attack_writes_standard_outputs(tmp_path):
    code, out = _attack(tmp_path)
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.json", "reconstruction.png", "loss.png",
                                               "reconstruction.safetensors"}
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("psnr", "ssim", "mse", "label_accuracy", "seconds"):
        assert isinstance(metrics[key], float), key
    assert metrics["psnr"] > 30 and metrics["label_accuracy"] == 1.0 and metrics["lpips"] is None
    config = json.loads((out / "config.json").read_text())
    assert config["scenario"]["dataset"] == "digits" and config["options"]["iterations"] == 30


def test_same_seed_same_metrics(tmp_path):
    _, a = _attack(tmp_path, name="a")
    _, b = _attack(tmp_path, name="b")
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    ma.pop("seconds"), mb.pop("seconds")
    assert ma == mb


def test_rerun_replaces_output_atomically(tmp_path):
    _attack(tmp_path)
    code, out = _attack(tmp_path)
    assert code == 0 and (out / "metrics.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary leftovers


def test_observe_then_attack_without_and_with_ground_truth(tmp_path, capsys):
    obs_dir = tmp_path / "obs"
    assert main(["observe", *FAST, "--protocol", "fedavg", "--local-epochs", "2", "--out", str(obs_dir)]) == 0
    assert (obs_dir / "observation.safetensors").exists() and (obs_dir / "ground_truth").is_dir()
    out = tmp_path / "blind"
    assert main(["attack", "--observation", str(obs_dir), "--attack", "idlg", "--iterations", "30", "--quiet",
                 "--out", str(out)]) == 0
    blind = json.loads((out / "metrics.json").read_text())
    assert blind["psnr"] is None and blind["ground_truth"] is False and "no ground truth" in blind["note"]
    assert (out / "reconstruction.png").exists()
    out = tmp_path / "scored"
    assert main(["attack", "--observation", str(obs_dir), "--ground-truth", str(obs_dir / "ground_truth"),
                 "--attack", "idlg", "--iterations", "30", "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["psnr"] > 30


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--dataset", "mnist", "--model", "lenet", "--attack", "idlg"], "histology"),
        (["--dataset", "digits", "--model", "vgg", "--attack", "idlg"], "convnet"),
        (["--dataset", "digits", "--model", "lenet", "--attack", "gradinversion"], "idlg"),
        (["--dataset", "digits", "--model", "lenet", "--attack", "idlg", "--batch-size", "5000"], "5000"),
        (["--dataset", "digits", "--model", "lenet", "--attack", "idlg", "--protocol", "fedx"], "fedavg"),
        (["--dataset", "digits", "--model", "lenet", "--attack", "idlg", "--option", "bogus=1"], "bogus"),
        (["--dataset", "digits", "--model", "lenet", "--attack", "idlg", "--model-option", "widht=3"], "widht"),
        (["--dataset", "medmnist:breastmnist", "--data-root", "/nonexistent", "--model", "lenet", "--attack", "idlg"],
         "breastmnist.npz"),
        (["--dataset", "digits", "--model", "lenet", "--attack", "idlg", "--iterations", "0"], "iterations"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    code = main(["attack", *argv, "--quiet", "--out", str(out)])
    assert needle in _one_line_error(capsys, code)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def _saved_observation(tmp_path):
    obs_dir = tmp_path / "obs"
    assert main(["observe", *FAST, "--out", str(obs_dir)]) == 0
    return obs_dir


def _attack_saved(obs_dir, out):
    return main(["attack", "--observation", str(obs_dir), "--attack", "idlg", "--quiet", "--out", str(out)])


def test_nan_update_is_refused(tmp_path, capsys):
    obs_dir = _saved_observation(tmp_path)
    tensors = load_file(obs_dir / "observation.safetensors")
    key = next(k for k in tensors if k.startswith("update/"))
    tensors[key].view(-1)[0] = float("inf")
    save_file(tensors, obs_dir / "observation.safetensors")
    capsys.readouterr()
    assert "NaN or Inf" in _one_line_error(capsys, _attack_saved(obs_dir, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_observation_model_mismatch_is_refused(tmp_path, capsys):
    obs_dir = _saved_observation(tmp_path)
    meta = json.loads((obs_dir / "observation.json").read_text())
    meta["model"]["num_classes"] = 3
    (obs_dir / "observation.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert "shape" in _one_line_error(capsys, _attack_saved(obs_dir, tmp_path / "out"))


def test_missing_and_corrupt_observation(tmp_path, capsys):
    assert "missing file" in _one_line_error(capsys, _attack_saved(tmp_path / "nothing", tmp_path / "out"))
    obs_dir = _saved_observation(tmp_path)
    (obs_dir / "observation.safetensors").write_bytes(b"\x80\x04garbage")
    capsys.readouterr()
    assert "safetensors" in _one_line_error(capsys, _attack_saved(obs_dir, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_ground_truth_shape_mismatch(tmp_path, capsys):
    obs_dir = _saved_observation(tmp_path)
    other = tmp_path / "other"
    assert main(["observe", *FAST, "--batch-size", "2", "--out", str(other)]) == 0
    capsys.readouterr()
    code = main(["attack", "--observation", str(obs_dir), "--ground-truth", str(other / "ground_truth"),
                 "--attack", "idlg", "--quiet", "--out", str(tmp_path / "out")])
    assert "ground truth" in _one_line_error(capsys, code)


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["attack", "--attack"])
    _one_line_error(capsys, exc.value.code)


def test_cuda_request_without_cuda(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out = _attack(tmp_path, "--device", "cuda")
    assert "cuda" in _one_line_error(capsys, code) and not out.exists()


def test_console_entry_point_runs_without_traceback(tmp_path):
    """A real subprocess: exit status and stderr exactly as a shell user sees them."""
    proc = subprocess.run(
        [sys.executable, "-m", "gradleak.cli", "attack", "--dataset", "nope", "--model", "lenet", "--attack", "idlg",
         "--out", str(tmp_path / "o")], capture_output=True, text=True,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "nope" in proc.stderr


def test_trained_model_and_train_mode_are_recorded(tmp_path):
    code, out = _attack(tmp_path, "--trained-steps", "20", "--train-mode", "--share-labels")
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["scenario"]["trained_steps"] == 20 and config["scenario"]["train_mode"] is True
    assert json.loads((out / "metrics.json").read_text())["label_method"] == "shared"


def test_grayscale_histology_observation(tmp_path):
    out = tmp_path / "obs"
    assert main(["observe", "--dataset", "histology", "--grayscale", "--image-size", "32", "--model", "cnn6",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "observation.json").read_text())
    assert meta["model"]["input_shape"] == [1, 32, 32] and meta["update_kind"] == "gradient"


def test_bad_attack_option_fails_before_simulating(tmp_path, capsys, monkeypatch):
    """A typo in an attack option must not cost the user a long pre-training first."""
    import gradleak.scenario

    def no_simulation(*_a, **_k):
        raise AssertionError("simulated before validating the attack options")

    monkeypatch.setattr(gradleak.scenario, "simulate", no_simulation)
    code = main(["attack", *FAST, "--trained-steps", "500", "--attack", "ig", "--option", "tv=1", "--quiet",
                 "--out", str(tmp_path / "o")])
    assert "tv_weight" in _one_line_error(capsys, code)
