"""The malicious-server threat: imprint crafting, the closed-form read-out, its checks, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from gradleak.attacks import create_attack
from gradleak.attacks.imprint_readout import read_bins
from gradleak.cli import main
from gradleak.fl.protocol import Protocol
from gradleak.malicious import ImprintCraft, craft_imprint, imprint_crafter, thresholds
from gradleak.metrics.exact import certified_fraction, exact_fraction, row_max_error
from gradleak.models import ModelSpec, complete_spec, create_model
from gradleak.priors import attacker_data
from gradleak.runner import evaluate
from gradleak.scenario import Scenario, simulate


@pytest.fixture(scope="module")
def digits_split():
    return attacker_data("digits")


def _crafted_round(split, *, batch_size=8, bins=256, seed=0, **scenario):
    craft = imprint_crafter(split.data.inputs, ImprintCraft(bins=bins))
    s = Scenario(dataset="digits", model="lenet", batch_size=batch_size, seed=seed, **scenario)
    return simulate(s, exclude=split.client_exclusion, craft=craft)


def test_read_bins_recovers_single_samples_and_mixes_collisions():
    """Synthetic update: rows 0..i fire for a sample in bin i, every row with the same g."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 5, generator=g, dtype=torch.float64)
    grads = torch.tensor([0.3, -0.7, 0.2, 0.5], dtype=torch.float64)
    bins_of = [1, 3, 3, 6]  # samples 1 and 2 collide in bin 3
    dw, db = torch.zeros(8, 5, dtype=torch.float64), torch.zeros(8, dtype=torch.float64)
    for n, b in enumerate(bins_of):
        dw[: b + 1] += grads[n] * x[n]
        db[: b + 1] += grads[n]
    readings = {r.bin: r for r in read_bins(dw, db)}
    assert sorted(readings) == [1, 3, 6]
    assert torch.allclose(readings[1].image, x[0]) and torch.allclose(readings[6].image, x[3])
    mix = (grads[1] * x[1] + grads[2] * x[2]) / (grads[1] + grads[2])
    assert torch.allclose(readings[3].image, mix) and readings[3].weight == pytest.approx(float(grads[1] + grads[2]))


def test_thresholds_are_increasing_quantiles_of_public_values():
    values = torch.arange(100, dtype=torch.float64)
    q = thresholds(values, bins=4)
    assert q[1:].tolist() == pytest.approx([24.75, 49.5, 74.25]) and q[0] < values.min()
    assert bool((thresholds(torch.zeros(10).index_fill(0, torch.tensor([0]), 1.0), bins=8).diff() > 0).all())


def test_bins_come_from_public_data_only(digits_split):
    """The crafted biases depend on the attacker's split, never on the client's batch."""
    obs_a, truth_a = _crafted_round(digits_split, seed=0)
    obs_b, truth_b = _crafted_round(digits_split, seed=1)
    assert not torch.equal(truth_a.inputs, truth_b.inputs)
    assert torch.equal(obs_a.parameters["imprint.bias"], obs_b.parameters["imprint.bias"])
    assert not set(truth_a.indices.tolist()) & set(digits_split.client_exclusion.tolist())
    spec = complete_spec(ModelSpec("lenet", (1, 8, 8), 10))
    other = craft_imprint(spec, create_model(spec), public=digits_split.data.inputs[:50], config=ImprintCraft(bins=256))[1]
    assert not torch.equal(other.imprint.bias, obs_a.parameters["imprint.bias"])


def test_closed_form_read_out_is_exact_and_certified(digits_split):
    obs, truth = _crafted_round(digits_split, batch_size=8, bins=512)
    rec = create_attack("imprint").run(obs)
    m = evaluate(rec, truth, observation=obs)
    assert m["threat_model"] == "malicious"
    assert m["exact_fraction"] >= 0.75 and m["certified_fraction"] >= 0.75
    certified = rec.inputs[rec.certified]
    assert (certified - truth.inputs[:, None]).flatten(2).abs().amax(2).min(0).values.max() < 1e-4  # each is a truth
    assert obs.model.name == "imprint" and json.loads(obs.model.options["base_options"]) == {"init": "uniform", "hidden_fc": 0}


@pytest.mark.parametrize("defense, protocol", [("secagg:4", Protocol()), (None, Protocol(name="fedavg", lr=0.1))])
def test_secure_aggregation_and_one_local_step_do_not_protect(digits_split, defense, protocol):
    obs, truth = _crafted_round(digits_split, batch_size=4, bins=512, defense=defense, protocol=protocol)
    assert obs.num_samples == (16 if defense else 4)
    m = evaluate(create_attack("imprint").run(obs), truth, observation=obs)
    assert m["exact_fraction"] >= 0.75
    assert m["certified_fraction"] <= m["exact_fraction"] + 1e-9  # no mixture certified here


def test_imprint_refuses_an_honest_model(digits_observation):
    from gradleak.errors import GradleakError

    with pytest.raises(GradleakError, match="crafted model"):
        create_attack("imprint").run(digits_observation[0])


def test_exact_fraction_for_images_and_records():
    assert exact_fraction(per_sample_psnr=[100.0, 60.0, 59.9, 20.0]) == 0.5
    assert exact_fraction() is None
    truth = torch.zeros(3, 4)
    recon = torch.stack([truth[0] + 5e-5, truth[1] + 1e-3, truth[2]])
    assert exact_fraction(per_sample_max_error=row_max_error(recon, truth, [0, 1, 2])) == pytest.approx(2 / 3)
    assert certified_fraction(torch.tensor([True, False]), num_samples=4) == 0.25 and certified_fraction(None, num_samples=4) is None


def test_cli_attack_records_threat_model_and_exact_fraction(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["attack", "--dataset", "digits", "--model", "lenet", "--attack", "imprint", "--batch-size", "8",
                 "--option", "bins=512", "--quiet", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["threat_model"] == "malicious" and metrics["exact_fraction"] >= 0.75
    assert "exact_fraction=" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert "attacker's split" in config["client_pool"]


def test_exact_matched_counts_one_to_one_exact_pairs():
    from gradleak.metrics.exact import exact_matched

    truth = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    recon = torch.stack([truth[1], truth[1], (truth[0] + truth[2]) / 2])  # truth 1 twice: counts once
    assert exact_matched(recon, truth, data_range=1.0) == pytest.approx(1 / 3)
    assert exact_matched(truth.flatten(1) + 5e-5, truth.flatten(1), data_range=None) == 1.0
