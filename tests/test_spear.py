"""SPEAR-style exact batch recovery: exact against the truth, certified only when exact."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from gradleak.attacks import create_attack
from gradleak.attacks.spear.disaggregate import Layer, Settings, disaggregate
from gradleak.attacks.spear.layer import linear_relu_layers
from gradleak.cli import main
from gradleak.fl.protocol import Protocol
from gradleak.models import build_model
from gradleak.observation import Observation
from gradleak.scenario import Scenario, simulate


def _random_case(*, b: int, n: int = 20, m: int = 64, seed: int = 0):
    """A float64 linear+ReLU layer under a random ReLU layer and a 10-class head, a batch, and
    the exact gradients. (A head straight on the layer would make ``dL/dA`` rank <= classes-1,
    a degenerate case no registered model has.)"""
    g = torch.Generator().manual_seed(seed)
    w, bias = torch.randn(m, n, generator=g, dtype=torch.float64), torch.randn(m, generator=g, dtype=torch.float64)
    hidden = torch.randn(32, m, generator=g, dtype=torch.float64) / m**0.5
    head = torch.randn(10, 32, generator=g, dtype=torch.float64)
    x = torch.rand(b, n, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (b,), generator=g)
    wv, bv = w.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    features = torch.relu(torch.relu(x @ wv.T + bv) @ hidden.T)
    loss = torch.nn.functional.cross_entropy(features @ head.T, y)
    gw, gb = torch.autograd.grad(loss, (wv, bv))
    return Layer(weight=w, bias=bias, grad_weight=gw, grad_bias=gb, lower=0.0, upper=1.0), x


def _matched_error(found: torch.Tensor, truth: torch.Tensor) -> float:
    """Largest distance from a true sample to its nearest recovered one."""
    return float(torch.cdist(truth, found).min(1).values.max())


def test_small_random_batch_recovered_exactly():
    layer, x = _random_case(b=4)
    outcome = disaggregate(layer, batch=4, settings=Settings(), generator=torch.Generator().manual_seed(0))
    assert outcome.rank == 4 and len(outcome.components) == 4
    assert _matched_error(torch.stack([c.x for c in outcome.components]), x) < 1e-8


def test_sampling_alone_recovers_a_batch():
    """SPEAR's own proposal stage (no peeling) finds the batch on a random layer."""
    from gradleak.attacks.spear.disaggregate import row_space, sample_directions, solve_from_directions
    from gradleak.attacks.spear.lowrank import low_rank, noise_floor

    layer, x = _random_case(b=4, seed=1)
    basis, grad_w, spectrum, rank = row_space(layer, batch=4)
    noise = noise_floor(spectrum, batch=4)
    factors = low_rank(grad_w, max_rank=rank, noise=noise)
    tol = 2 * max(noise, float(spectrum[0]) * 1e-15)
    directions, zeros, _ = sample_directions(factors, tol=tol, settings=Settings(trials=4096),
                                             generator=torch.Generator().manual_seed(0))
    coords = solve_from_directions(factors, layer.grad_bias, directions, tol=tol)
    assert coords is not None and bool((zeros >= 4).all())
    assert _matched_error(basis.inputs(coords), x) < 1e-8


def _observation(**kw):
    return simulate(Scenario(**{"dataset": "histology", "model": "mlp", "batch_size": 8, "seed": 0, **kw}))


def test_attack_recovers_and_certifies_histology_batch():
    observation, truth = _observation()
    rec = create_attack("spear").run(observation)
    assert rec.certified.tolist() == [True] * 8
    err = torch.cdist(truth.inputs.flatten(1).double(), rec.inputs.flatten(1).double()).min(1).values
    assert float(err.max()) < 1e-4
    assert rec.label_method == "spear-head"
    assert sorted(rec.labels.tolist()) == sorted(truth.labels.tolist())


def test_one_step_fedavg_weight_delta_is_recovered():
    observation, truth = _observation(protocol=Protocol(name="fedavg", lr=0.05, local_epochs=1))
    rec = create_attack("spear").run(observation)
    assert all(rec.certified)
    err = torch.cdist(truth.inputs.flatten(1).double(), rec.inputs.flatten(1).double()).min(1).values
    assert float(err.max()) < 1e-4


def test_certificate_refuses_a_tampered_update():
    observation, _ = _observation()
    update = dict(observation.update)
    g = torch.Generator().manual_seed(3)
    # a server-side forgery: the weight gradient of the first layer gains a rank-one term
    update["body.0.weight"] = update["body.0.weight"] + 1e-3 * update["body.0.weight"].abs().max() * torch.outer(
        torch.randn(update["body.0.weight"].shape[0], generator=g), torch.rand(update["body.0.weight"].shape[1], generator=g))
    tampered = dataclasses.replace(observation, update=update)
    rec = create_attack("spear").run(tampered)
    assert not all(rec.certified)


def test_records_recovered_exactly():
    observation, truth = simulate(Scenario(dataset="ihm-synthetic", model="mlp", batch_size=6, seed=1))
    rec = create_attack("spear").run(observation)
    assert all(rec.certified)
    err = torch.cdist(truth.inputs.flatten(1).double(), rec.inputs.flatten(1).double()).min(1).values
    assert float(err.max()) < 1e-4


def test_layer_search_finds_only_linear_relu():
    mlp = build_model("mlp", input_shape=(1, 8, 8), num_classes=10)
    assert [(l.name, l.depth) for l in linear_relu_layers(mlp, (1, 8, 8))] == [("body.0", 0), ("body.2", 1)]
    lenet = build_model("lenet", input_shape=(1, 8, 8), num_classes=10)
    assert linear_relu_layers(lenet, (1, 8, 8)) == []
    tanh = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, activation="tanh")
    assert linear_relu_layers(tanh, (1, 8, 8)) == []


def test_cli_writes_exact_and_certified_fraction(tmp_path):
    out = tmp_path / "s"
    code = main(["attack", "--dataset", "histology", "--model", "mlp", "--attack", "spear", "--batch-size", "16",
                 "--seed", "0", "--quiet", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["exact_fraction"] == 1.0 and metrics["certified_fraction"] == 1.0
    assert metrics["label_accuracy"] == 1.0


def test_cli_model_without_linear_relu_is_one_line_error(tmp_path, capsys):
    out = tmp_path / "bad"
    code = main(["attack", "--dataset", "digits", "--model", "lenet", "--attack", "spear", "--batch-size", "2",
                 "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "linear layer with bias followed by a ReLU" in err and "'lenet'" in err
    assert not out.exists()


def test_unknown_layer_name_is_refused(capsys, tmp_path):
    code = main(["attack", "--dataset", "digits", "--model", "mlp", "--attack", "spear", "--option", "layer=fc",
                 "--quiet", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "body.0" in err and "\n" not in err


def test_observation_roundtrip_keeps_recovery(tmp_path):
    observation, _ = _observation(batch_size=4)
    observation.save(tmp_path / "obs")
    rec = create_attack("spear").run(Observation.load(tmp_path / "obs"))
    assert all(rec.certified)


@pytest.mark.parametrize("bad", [{"trials": -1}, {"box_slack": 2.0}])
def test_bad_config_refused(bad):
    from gradleak.errors import GradleakError

    with pytest.raises(GradleakError):
        create_attack("spear", **bad)


def test_rank_condition_for_disaggregation():
    from gradleak.analysis.disaggregation import disaggregation_analysis, expected_draws, expected_single_units

    assert expected_draws(1) == 1.0 and expected_draws(2) == 3.0  # 2^(b-1) * H_b
    assert expected_single_units(256, 4) == 256 * 4 / 16
    narrow = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[8])
    report = disaggregation_analysis(narrow, input_shape=(1, 8, 8), budget=1e3)
    assert report.rank_limit == 8 and report.expected_limit <= 8 and report.depth == 0
    wide = disaggregation_analysis(build_model("mlp", input_shape=(3, 28, 28), num_classes=2, hidden=[1000, 256]),
                                   input_shape=(3, 28, 28), budget=1e3)
    assert expected_draws(wide.sampling_limit) <= 1e3 < expected_draws(wide.sampling_limit + 1)
    assert expected_single_units(1000, wide.peeling_limit) >= 1 > expected_single_units(1000, wide.peeling_limit + 1)
    assert wide.expected_limit >= report.expected_limit
    assert disaggregation_analysis(build_model("lenet", input_shape=(1, 8, 8), num_classes=10),
                                   input_shape=(1, 8, 8)) is None


def test_rank_cli_reports_disaggregation_for_relu_mlp(capsys):
    assert main(["rank", "--model", "mlp", "--input-shape", "1,8,8", "--classes", "10", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["disaggregation"]["layer"] == "body.0" and payload["disaggregation"]["expected_limit"] >= 2
    assert main(["rank", "--model", "mlp", "--input-shape", "1,8,8", "--classes", "10", "--no-numerical"]) == 0
    assert "batches (spear): body.0" in capsys.readouterr().out
