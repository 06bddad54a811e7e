"""Generative-prior attacks (GI-z, GIAS, GIML) and their priors, on tiny sizes (8x8 digits)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from gradleak.attacks import create_attack
from gradleak.cli import main
from gradleak.data import load_dataset
from gradleak.errors import GradleakError
from gradleak.fl.protocol import compute_update
from gradleak.metrics import psnr
from gradleak.priors import (
    GeneratorSpec, PriorTrainConfig, attacker_data, build_generator, load_prior, save_prior, train_prior,
)
from gradleak.scenario import Scenario, simulate

from conftest import make_observation


@pytest.mark.parametrize("arch", ["dcgan", "stylegan"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16), (3, 28, 28), (1, 25, 25)])
def test_generators_make_images_of_the_requested_shape(arch, shape):
    gen = build_generator(GeneratorSpec(arch=arch, shape=shape, latent_dim=8, width=16)).eval()
    x = gen(torch.randn(3, 8))
    assert tuple(x.shape) == (3, *shape)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_stylegan_w_plus_reproduces_z():
    gen = build_generator(GeneratorSpec(arch="stylegan", shape=(1, 8, 8), latent_dim=8, width=16)).eval()
    z = torch.randn(2, 8)
    w = gen.to_search_space(z, "w+")
    assert w.shape == (2, gen.num_styles, 8)
    torch.testing.assert_close(gen.synthesize(w, "w+"), gen(z))


def test_checkpoint_round_trip_and_validation(tmp_path):
    gen = build_generator(GeneratorSpec(arch="dcgan", shape=(1, 8, 8), latent_dim=8, width=16)).eval()
    save_prior(tmp_path / "p", generator=gen, info={"attacker_split": "test"})
    loaded, info = load_prior(tmp_path / "p", expected_shape=(1, 8, 8))
    z = torch.randn(2, 8)
    torch.testing.assert_close(loaded(z), gen(z))
    assert info["attacker_split"] == "test"
    with pytest.raises(GradleakError, match=r"1x8x8.*3x8x8"):
        load_prior(tmp_path / "p", expected_shape=(3, 8, 8))
    with pytest.raises(GradleakError, match="does not exist"):
        load_prior(tmp_path / "missing")
    (tmp_path / "p" / "generator.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(GradleakError, match="cannot read"):
        load_prior(tmp_path / "p")
    save_file({"fc.weight": torch.zeros(2, 2)}, tmp_path / "p" / "generator.safetensors")
    with pytest.raises(GradleakError, match="does not fit"):
        load_prior(tmp_path / "p")


def test_attacker_split_is_disjoint_from_every_client_batch():
    split = attacker_data("histology")
    full = load_dataset("histology")
    meta = full.meta
    cols, stride, size = meta["grid"][1], meta["stride"], meta["patch_size"]
    x0 = (torch.arange(len(full)) % cols) * stride
    allowed = torch.ones(len(full), dtype=torch.bool)
    allowed[split.client_exclusion] = False
    assert len(split.data) > 100 and int(allowed.sum()) > 100
    # every client patch ends left of where every attacker patch starts: no shared pixel
    starts = x0[x0 >= int(round(0.6 * ((cols - 1) * stride + size)))]
    assert int((x0[allowed] + size).max()) <= int(starts.min())
    obs, truth = simulate(Scenario(dataset="histology", model="lenet", batch_size=8, seed=3), exclude=split.client_exclusion)
    assert not set(truth.indices.tolist()) & set(split.client_exclusion.tolist())


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    """A dcgan prior trained for a few steps on the attacker's digits split."""
    split = attacker_data("digits")
    gen, log = train_prior(split.data.inputs, config=PriorTrainConfig(steps=20, width=16, latent_dim=8, batch_size=32),
                           generator=torch.Generator().manual_seed(0))
    assert len(log["g_loss"]) == 20
    path = tmp_path_factory.mktemp("prior") / "p"
    save_prior(path, generator=gen, info={"attacker_split": split.rule})
    return path


@pytest.mark.parametrize("name", ["giz", "gias", "giml"])
def test_prior_attacks_run_on_tiny_sizes(name, tiny_prior):
    obs, truth = make_observation(batch_size=2)
    options = {"iterations": 20, "restarts": 2, "entries": "top-layers:2"}
    if name != "giz":
        options["gias_iterations"] = 10
    if name == "giml":
        options.update(meta_steps=2, inner_steps=2, width=16, latent_dim=8)
    else:
        options["prior"] = str(tiny_prior)
    attack = create_attack(name, **options)
    rec = attack.run(obs, generator=torch.Generator().manual_seed(0))
    assert rec.inputs.shape == truth.inputs.shape and bool(torch.isfinite(rec.inputs).all())
    assert float(rec.inputs.min()) >= 0.0 and float(rec.inputs.max()) <= float(obs.data["max"])
    assert rec.chosen_restart == min(range(2), key=rec.restart_losses.__getitem__)
    assert len(rec.restart_losses) == 2 and rec.labels.shape == truth.labels.shape


def test_prior_attack_without_prior_is_a_clear_error():
    obs, _ = make_observation()
    with pytest.raises(GradleakError, match="--prior"):
        create_attack("gias", iterations=2).run(obs)


def test_gi_z_recovers_an_image_the_generator_can_produce():
    """Generator-space sanity: the target lies in the range of G, so GI-z can match it exactly."""
    obs, _ = make_observation(batch_size=1)
    torch.manual_seed(0)
    gen = build_generator(GeneratorSpec(arch="dcgan", shape=(1, 8, 8), latent_dim=4, width=16)).eval()
    target = gen(torch.randn(1, 4, generator=torch.Generator().manual_seed(5)))
    model = obs.build_model()
    labels = torch.tensor([3])
    update = {k: v.detach() for k, v in compute_update(model, inputs=target, labels=labels, protocol=obs.protocol).items()}
    obs = dataclasses.replace(obs, update=update, labels=labels)
    # the checkpoint path is how attacks receive priors; write this one to a temporary directory
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        save_prior(tmp, generator=gen)
        rec = create_attack("giz", prior=tmp, iterations=200, restarts=4, lr=0.1, latent_weight=0.0).run(
            obs, generator=torch.Generator().manual_seed(0))
    assert psnr(rec.inputs, target.detach(), data_range=1.0).mean > 30


def test_gias_improves_over_gi_z_on_a_real_image(tiny_prior):
    obs, truth = make_observation(batch_size=1)
    common = {"prior": str(tiny_prior), "iterations": 100, "restarts": 2}
    giz = create_attack("giz", **common).run(obs, generator=torch.Generator().manual_seed(0))
    gias = create_attack("gias", **common, gias_iterations=150, gias_lr=1e-2, gias_latent_lr=1e-2).run(
        obs, generator=torch.Generator().manual_seed(0))
    assert gias.gradient_loss < giz.gradient_loss
    assert psnr(gias.inputs, truth.inputs, data_range=1.0).mean > psnr(giz.inputs, truth.inputs, data_range=1.0).mean + 1.0


def test_cli_prior_train_then_attack(tmp_path, capsys):
    prior = tmp_path / "prior"
    assert main(["prior", "train", "--dataset", "digits", "--steps", "10", "--width", "16", "--latent-dim", "8",
                 "--quiet", "--out", str(prior)]) == 0
    assert {p.name for p in prior.iterdir()} >= {"prior.json", "generator.safetensors", "samples.png", "quality.json"}
    quality = json.loads((prior / "quality.json").read_text())
    assert quality["sample_to_train"] > 0 and quality["train_to_train"] > 0
    out = tmp_path / "run"
    code = main(["attack", "--dataset", "digits", "--model", "lenet", "--batch-size", "2", "--attack", "gias",
                 "--prior", str(prior), "--iterations", "10", "--restarts", "1", "--option", "gias_iterations=5",
                 "--quiet", "--out", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.json", "reconstruction.png"}
    config = json.loads((out / "config.json").read_text())
    assert "attacker" in config["client_pool"]


@pytest.mark.parametrize("case", ["missing", "mismatched", "not-a-prior-attack"])
def test_cli_bad_prior_is_a_one_line_error(tmp_path, capsys, case):
    gen = build_generator(GeneratorSpec(arch="dcgan", shape=(3, 8, 8), latent_dim=8, width=16))
    save_prior(tmp_path / "p3", generator=gen)
    prior = {"missing": tmp_path / "nope", "mismatched": tmp_path / "p3", "not-a-prior-attack": tmp_path / "p3"}[case]
    attack = "idlg" if case == "not-a-prior-attack" else "gias"
    out = tmp_path / "run"
    code = main(["attack", "--dataset", "digits", "--model", "lenet", "--attack", attack, "--prior", str(prior),
                 "--iterations", "2", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err, err
    assert not out.exists()
    if case == "mismatched":
        assert "3x8x8" in err and "1x8x8" in err
