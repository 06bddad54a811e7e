"""Generative-prior attacks (GI-z, GIAS, GIML) and their priors, on tiny sizes (8x8 digits)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gradleak.attacks import GradientMatcher, create_attack, recover_labels
from gradleak.attacks.gias import latent_penalty
from gradleak.cli import main
from gradleak.data import load_dataset
from gradleak.errors import GradleakError
from gradleak.fl.protocol import compute_update
from gradleak.metrics import psnr
from gradleak.priors import (
    GeneratorSpec, PriorTrainConfig, attacker_data, build_generator, frechet_distance, hold_out, load_prior,
    nearest_neighbour_rmse, sample_quality, save_prior, train_prior,
)
from gradleak.scenario import Scenario, simulate

from conftest import make_observation


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    """Overrides conftest's 2 threads here: these tensors are tiny, and on a loaded machine the
    second thread's spin-waits cost 30x the CPU (measured: 86 s instead of 2.5 s for one GIAS test)."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(2)


@pytest.mark.parametrize("arch", ["dcgan", "stylegan"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16), (3, 28, 28), (1, 25, 25)])
def test_generators_make_images_of_the_requested_shape(arch, shape):
    gen = build_generator(GeneratorSpec(arch=arch, shape=shape, latent_dim=8, width=16)).eval()
    with torch.no_grad():
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
        rec = create_attack("giz", prior=tmp, iterations=100, restarts=2, lr=0.1, latent_weight=0.0).run(
            obs, generator=torch.Generator().manual_seed(0))
    assert psnr(rec.inputs, target.detach(), data_range=1.0).mean > 30


def test_gias_improves_over_gi_z_on_a_real_image(tiny_prior):
    obs, truth = make_observation(batch_size=1)
    common = {"prior": str(tiny_prior), "iterations": 50, "restarts": 2}
    giz = create_attack("giz", **common).run(obs, generator=torch.Generator().manual_seed(0))
    gias = create_attack("gias", **common, gias_iterations=80, gias_lr=1e-2, gias_latent_lr=1e-2).run(
        obs, generator=torch.Generator().manual_seed(0))
    assert gias.gradient_loss < giz.gradient_loss
    # measured: GI-z ~8 dB with this barely trained prior, GIAS ~27 dB
    assert psnr(gias.inputs, truth.inputs, data_range=1.0).mean > psnr(giz.inputs, truth.inputs, data_range=1.0).mean + 5.0


def test_cli_prior_train_then_attack(tmp_path, capsys):
    prior = tmp_path / "prior"
    assert main(["prior", "train", "--dataset", "digits", "--steps", "10", "--width", "16", "--latent-dim", "8",
                 "--quiet", "--out", str(prior)]) == 0
    assert {p.name for p in prior.iterdir()} >= {"prior.json", "generator.safetensors", "samples.png", "quality.json"}
    quality = json.loads((prior / "quality.json").read_text())
    assert quality["sample_to_train"] > 0 and quality["train_to_train"] > 0
    assert quality["fd_untrained"] > 0 and quality["held_out"] > 0 and "projection_psnr" in quality
    out = tmp_path / "run"
    code = main(["attack", "--dataset", "digits", "--model", "lenet", "--batch-size", "2", "--attack", "gias",
                 "--prior", str(prior), "--iterations", "10", "--restarts", "1", "--option", "gias_iterations=5",
                 "--quiet", "--out", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.json", "reconstruction.png"}
    config = json.loads((out / "config.json").read_text())
    assert "attacker" in config["client_pool"]


def _break_prior(path, case):
    """Damage a saved prior the way users' files go wrong."""
    meta, weights = path / "prior.json", path / "generator.safetensors"
    if case == "corrupt-json":
        meta.write_text("{ not json")
    elif case == "wrong-format":
        meta.write_text(json.dumps({"format": "something-else/1", "generator": {}}))
    elif case == "unknown-arch":
        data = json.loads(meta.read_text())
        data["generator"]["arch"] = "biggan"
        meta.write_text(json.dumps(data))
    elif case == "pickle-weights":  # a torch.save (pickle) file under the safetensors name: never unpickled
        torch.save({"fc.weight": torch.zeros(2, 2)}, weights)
    elif case == "truncated-weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif case == "missing-weights":
        weights.unlink()
    elif case == "nan-weights":
        from safetensors.torch import load_file

        state = load_file(weights)
        state["fc.weight"] = torch.full_like(state["fc.weight"], float("nan"))
        save_file(state, weights)


PRIOR_CASES = ["missing", "wrong-channels", "wrong-resolution", "not-a-prior-attack", "corrupt-json", "wrong-format",
               "unknown-arch", "pickle-weights", "truncated-weights", "missing-weights", "nan-weights"]


@pytest.mark.parametrize("case", PRIOR_CASES)
def test_cli_bad_prior_is_a_one_line_error(tmp_path, capsys, case):
    shape = {"wrong-channels": (3, 8, 8), "wrong-resolution": (1, 16, 16)}.get(case, (1, 8, 8))
    gen = build_generator(GeneratorSpec(arch="dcgan", shape=shape, latent_dim=8, width=16))
    save_prior(tmp_path / "p", generator=gen)
    _break_prior(tmp_path / "p", case)
    prior = tmp_path / ("nope" if case == "missing" else "p")
    attack = "idlg" if case == "not-a-prior-attack" else "gias"
    out = tmp_path / "run"
    code = main(["attack", "--dataset", "digits", "--model", "lenet", "--attack", attack, "--prior", str(prior),
                 "--iterations", "2", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err, err
    assert not out.exists()
    expected = {"missing": "does not exist", "wrong-channels": "3x8x8 but the observation's inputs are 1x8x8",
                "wrong-resolution": "1x16x16 but the observation's inputs are 1x8x8", "not-a-prior-attack": "--prior applies",
                "corrupt-json": "not valid JSON", "wrong-format": "not a gradleak-prior/1", "unknown-arch": "biggan",
                "pickle-weights": "cannot read", "truncated-weights": "cannot read",
                "missing-weights": "no generator.safetensors", "nan-weights": "NaN"}[case]
    assert expected in err, err


def test_frechet_distance_matches_an_eigen_decomposition_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 6))
    b = rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) + 0.5
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + 2.0) == pytest.approx(6 * 4.0, rel=1e-6)  # a shift moves only the means
    # reference: tr sqrt(S_a S_b) = sum of sqrt eigenvalues of S_a^(1/2) S_b S_a^(1/2) (symmetric, eigh)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = v @ np.diag(np.sqrt(w)) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0, None)).sum()
    reference = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * cross
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-6)


def test_nearest_neighbour_rmse_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    q, r = torch.rand(5, 1, 4, 4, generator=g), torch.rand(7, 1, 4, 4, generator=g)
    loop = torch.tensor([min(float((qi - rj).pow(2).mean().sqrt()) for rj in r) for qi in q])
    torch.testing.assert_close(nearest_neighbour_rmse(q, r), loop, rtol=1e-5, atol=1e-6)
    self_nn = nearest_neighbour_rmse(r, r, exclude_self=True)
    assert bool((self_nn > 0).all())


def test_sample_quality_reports_held_out_and_frechet_figures(tiny_prior):
    gen, _ = load_prior(tiny_prior)
    train, held = hold_out(attacker_data("digits").data.inputs, fraction=0.15)
    q = sample_quality(gen, train=train, held_out=held, generator=torch.Generator().manual_seed(0), samples=64,
                       projected=4)
    for key in ("sample_to_train", "sample_to_held_out", "held_out_to_samples", "held_out_to_train", "fd_samples",
                "fd_held_out", "fd_untrained", "projection_psnr", "projection_psnr_untrained"):
        assert math.isfinite(q[key]) and q[key] >= 0, key
    assert q["held_out"] == len(held) and len(train) + len(held) == len(attacker_data("digits").data)


def test_cli_prior_train_rejects_a_bad_held_out_fraction(tmp_path, capsys):
    code = main(["prior", "train", "--dataset", "digits", "--held-out", "0.9", "--quiet", "--out", str(tmp_path / "p")])
    assert code == 2 and "--held-out" in capsys.readouterr().err and not (tmp_path / "p").exists()


def test_w_plus_search_on_a_stylegan_prior_and_a_clear_error_on_dcgan(tmp_path):
    obs, truth = make_observation(batch_size=2)
    style = build_generator(GeneratorSpec(arch="stylegan", shape=(1, 8, 8), latent_dim=8, width=16)).eval()
    save_prior(tmp_path / "style", generator=style)
    rec = create_attack("gias", prior=str(tmp_path / "style"), latent_space="w+", iterations=10, restarts=2,
                        gias_iterations=5).run(obs, generator=torch.Generator().manual_seed(0))
    assert rec.inputs.shape == truth.inputs.shape and bool(torch.isfinite(rec.inputs).all())
    dcgan = build_generator(GeneratorSpec(arch="dcgan", shape=(1, 8, 8), latent_dim=8, width=16)).eval()
    save_prior(tmp_path / "dcgan", generator=dcgan)
    with pytest.raises(GradleakError, match="searches only the 'z' space"):
        create_attack("giz", prior=str(tmp_path / "dcgan"), latent_space="w+", iterations=2).run(obs)


def test_gias_stacked_copies_match_independent_generator_copies(tiny_prior):
    """The vmapped per-image copies against a plain reference: deep copies, one Adam, a Python loop."""
    obs, _ = make_observation(batch_size=2)
    attack = create_attack("gias", prior=str(tiny_prior), gias_iterations=4, gias_lr=1e-2, gias_latent_lr=1e-2,
                           step_decay=False)
    gen, _ = load_prior(tiny_prior)
    matcher = GradientMatcher(obs, distance="cosine")
    estimate = recover_labels(obs, model=matcher.model, generator=torch.Generator().manual_seed(0))
    labels = estimate.labels
    latent = torch.randn(2, gen.spec.latent_dim, generator=torch.Generator().manual_seed(1))
    fast = attack.parameter_search(obs, gen=gen, latent=latent, matcher=matcher, labels=estimate, progress=lambda _n: None)
    copies = [copy.deepcopy(gen).requires_grad_(True) for _ in range(2)]
    params = [p for c in copies for p in c.parameters()]
    z = latent.clone().requires_grad_(True)
    opt = torch.optim.Adam([{"params": params, "lr": 1e-2}, {"params": [z], "lr": 1e-2}])
    for _ in range(4):
        x = torch.cat([c(z[i:i + 1]) for i, c in enumerate(copies)])
        loss = matcher(x, labels) + attack.config.latent_weight * latent_penalty(z, "z")
        grads = torch.autograd.grad(loss, [*params, z])
        for v, g in zip([*params, z], grads):
            v.grad = g
        opt.step()
    with torch.no_grad():
        x = torch.cat([c(z[i:i + 1]) for i, c in enumerate(copies)])
    torch.testing.assert_close(fast.inputs, x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["dcgan", "stylegan"])
def test_untrained_generators_draw_different_images_for_different_latents(arch):
    """Regression: PyTorch's default init made every stylegan sample the same image (styles varied by 1 %)."""
    torch.manual_seed(0)
    gen = build_generator(GeneratorSpec(arch=arch, shape=(3, 28, 28))).eval()
    with torch.no_grad():
        x = gen(torch.randn(32, gen.spec.latent_dim))
    assert float(x.std(0).mean()) > 0.25 * float(x.std(dim=(1, 2, 3)).mean())


def test_giml_from_received_updates_uses_no_attacker_images(monkeypatch, tmp_path):
    """tasks=updates (the GIAS talk's attacker without a data set) never reads attacker data."""
    import gradleak.attacks.giml as giml
    import gradleak.attacks.labels as labels

    def forbidden(*args, **kwargs):
        raise AssertionError("attacker data read")

    obs, truth = make_observation(batch_size=2)
    other, _ = make_observation(batch_size=2, seed=1)  # another client's update the server received
    other.save(tmp_path / "other")
    import gradleak.priors.data as priors_data

    monkeypatch.setattr(giml, "attacker_images", forbidden)  # the attacker's images, read where giml reads them
    monkeypatch.setattr(priors_data, "attacker_data", forbidden)  # and the split underneath
    monkeypatch.setattr(labels, "_public_data", forbidden)
    attack = create_attack("giml", tasks="updates", stream=str(tmp_path / "other"), meta_steps=3, inner_steps=2,
                           width=16, latent_dim=8, iterations=5, restarts=1, gias_iterations=2)
    learnt = attack.run(obs, generator=torch.Generator().manual_seed(0))  # the real meta-learning, image-free
    assert bool(torch.isfinite(learnt.inputs).all()) and learnt.label_method.startswith("llg")
    seen = []
    monkeypatch.setattr(giml.GIML, "meta_learn", lambda self, o, *, gen, task, generator, progress:
                        seen.extend(task(s).target for s in range(3)))
    rec = attack.run(obs, generator=torch.Generator().manual_seed(0))
    assert rec.inputs.shape == truth.inputs.shape and rec.label_method.startswith("llg")
    names = [n for n, _ in obs.build_model().named_parameters()]
    observed = torch.cat([obs.update[n].flatten() for n in names])
    assert torch.equal(seen[0], observed) and torch.equal(seen[2], observed)  # round robin over the stream
    assert not torch.equal(seen[1], observed)


def test_giml_task_options_are_checked(tmp_path):
    with pytest.raises(GradleakError, match="own-images"):
        create_attack("giml", tasks="images")
    with pytest.raises(GradleakError, match="stream"):
        create_attack("giml", stream="somewhere")
    obs, _ = make_observation(batch_size=1)
    other, _ = make_observation(batch_size=1, dataset="faces")  # 25x25 grayscale: another shape
    other.save(tmp_path / "faces")
    with pytest.raises(GradleakError, match="does not match"):
        create_attack("giml", tasks="updates", stream=str(tmp_path / "faces"), meta_steps=1, inner_steps=1,
                      width=16, latent_dim=8, iterations=2, restarts=1, gias_iterations=1).run(obs)
