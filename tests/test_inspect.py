"""The client-side check: alarms on crafted models, silence on benign ones, refusal of non-safetensors files."""

from __future__ import annotations

import pickle

import pytest
import torch

from gradleak.cli import main
from gradleak.malicious import ImprintCraft, craft_imprint, inspect_state, load_model_file, save_model_file
from gradleak.models import ModelSpec, complete_spec, create_model


def _model(name, shape=(3, 28, 28), seed=0):
    spec = complete_spec(ModelSpec(name, shape, 2))
    torch.manual_seed(seed)
    return spec, create_model(spec)


def _crafted(noise=0.0, bins=256):
    spec, model = _model("lenet")
    public = torch.rand(200, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    spec, crafted = craft_imprint(spec, model, public=public, config=ImprintCraft(bins=bins))
    if noise:
        w = crafted.imprint.weight
        with torch.no_grad():
            w.add_(noise * w.norm(dim=1, keepdim=True) / w.shape[1] ** 0.5
                   * torch.randn(w.shape, generator=torch.Generator().manual_seed(1)))
    return spec, crafted


@pytest.mark.parametrize("name", ["lenet", "mlp", "convnet", "cnn6", "fcn3"])
def test_benign_models_raise_no_alarm(name):
    shape = (3, 32, 32) if name in ("cnn6", "fcn3") else (3, 28, 28)
    _, model = _model(name, shape)
    assert not inspect_state(model.state_dict()).alarm


@pytest.mark.parametrize("noise", [0.0, 0.1, 0.3, 0.5, 1.0])
def test_crafted_models_are_refused_even_with_perturbed_rows(noise):
    spec, crafted = _crafted(noise)
    report = inspect_state(crafted.state_dict(), spec=spec)
    assert report.alarm and report.layers[0].name == "imprint.weight"
    if noise <= 0.3:  # rows still within |cos| 0.9 of one direction: one threshold per bin
        assert report.layers[0].ladder == 256
    else:  # caught by the energy of the dominant direction alone, 1 / (1 + noise^2)
        assert report.layers[0].rank_one_share == pytest.approx(1 / (1 + noise ** 2), abs=0.05)


def test_heavily_perturbed_rows_are_not_caught():
    """Honest limit: at relative noise 2 the rows no longer look alike (docs/malicious.md)."""
    spec, crafted = _crafted(2.0)
    assert not inspect_state(crafted.state_dict(), spec=spec).alarm


def test_cli_inspect_exit_codes_and_json(tmp_path, capsys):
    spec, crafted = _crafted()
    bad = tmp_path / "crafted.safetensors"
    save_model_file(crafted, bad, spec=spec)
    assert main(["inspect", "--model-file", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "refuse" in capsys.readouterr().out and (tmp_path / "o" / "inspect.json").is_file()
    spec, model = _model("lenet")
    good = tmp_path / "lenet.safetensors"
    save_model_file(model, good, spec=spec)
    assert main(["inspect", "--model-file", str(good)]) == 0
    state, loaded = load_model_file(good)
    assert loaded == spec and set(state) == set(model.state_dict())


class _Trap:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(_Trap.marker),))


@pytest.mark.parametrize("kind", ["pickle", "torch", "garbage", "empty"])
def test_non_safetensors_files_are_refused_in_one_line_and_never_unpickled(tmp_path, capsys, kind):
    f = tmp_path / "model.bin"
    _Trap.marker = str(tmp_path / "pwned")
    if kind == "pickle":
        f.write_bytes(pickle.dumps({"w": _Trap()}))
    elif kind == "torch":
        torch.save({"w": torch.zeros(2)}, f)
    elif kind == "garbage":
        f.write_bytes(b"not a model at all, just text")
    else:
        f.write_bytes(b"")
    out = tmp_path / "o"
    assert main(["inspect", "--model-file", str(f), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and str(f) in err
    assert not (tmp_path / "pwned").exists() and not out.exists()


def test_spec_that_does_not_fit_is_refused(tmp_path, capsys):
    spec, model = _model("lenet")
    f = tmp_path / "m.safetensors"
    save_model_file(model, f)
    other = tmp_path / "other.json"
    other.write_text('{"name": "mlp", "input_shape": [3, 28, 28], "num_classes": 2}')
    assert main(["inspect", "--model-file", str(f), "--spec", str(other)]) == 2
    assert "does not match" in capsys.readouterr().err
