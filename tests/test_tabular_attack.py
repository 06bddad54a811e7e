"""Record models, the tabular attack's regularizers and projection, record metrics, tuning, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gradleak.attacks import create_attack
from gradleak.attacks.tabular import REGULARIZERS, RecordLayout, project
from gradleak.cli import main
from gradleak.data.mimic3 import SCHEMA
from gradleak.errors import GradleakError, ShapeError
from gradleak.metrics.tabular import evaluate_records
from gradleak.models import build_model, classifier_layer
from gradleak.scenario import Scenario, simulate

LAYOUT = RecordLayout.from_schema(SCHEMA, columns=76, device=torch.device("cpu"))


@pytest.mark.parametrize("name", ["logreg", "mlp", "gru", "lstm"])
def test_record_models_shape_and_double_backprop(name):
    torch.manual_seed(0)
    model = build_model(name, input_shape=(6, 5), num_classes=2, **({"hidden": [8]} if name == "mlp" else {}))
    x = torch.randn(3, 6, 5, requires_grad=True)
    out = model(x)
    assert out.shape == (3, 2) and classifier_layer(model).out_features == 2
    grads = torch.autograd.grad(out.logsumexp(1).sum(), list(model.parameters()), create_graph=True)
    (gx,) = torch.autograd.grad(sum((g**2).sum() for g in grads), x)
    assert float(gx.abs().sum()) > 0


def test_recurrent_models_need_time_series():
    with pytest.raises(ShapeError, match="time-series"):
        build_model("gru", input_shape=(1, 8, 8), num_classes=2)


def test_temporal_tv():
    flat_in_time = torch.randn(2, 1, 76).expand(2, 48, 76)
    assert float(REGULARIZERS.get("tv_weight")(flat_in_time, LAYOUT)) == 0.0
    x = torch.zeros(1, 48, 76)
    x[0, 1::2] = 1.0  # alternates every hour
    assert float(REGULARIZERS.get("tv_weight")(x, LAYOUT)) == pytest.approx(1.0)
    assert float(REGULARIZERS.get("tv_weight")(torch.randn(3, 30), LAYOUT)) == 0.0  # flat rows: no time axis


def test_binary_constraint_only_on_binary_columns():
    x = torch.randint(0, 2, (2, 48, 76)).float()
    x[..., ~LAYOUT.binary] = 3.7  # continuous columns are free
    assert float(REGULARIZERS.get("binary_weight")(x, LAYOUT)) == 0.0
    x[..., LAYOUT.binary] = 0.5
    assert float(REGULARIZERS.get("binary_weight")(x, LAYOUT)) == pytest.approx(0.25)


def test_nuclear_norm_matches_numpy():
    x = torch.randn(2, 48, 76, dtype=torch.float64)
    expected = np.mean([np.linalg.norm(m, ord="nuc") for m in x.numpy()])
    assert float(REGULARIZERS.get("nuclear_weight")(x, LAYOUT)) == pytest.approx(expected)
    low_rank = torch.outer(torch.randn(48), torch.randn(76)).unsqueeze(0)
    assert float(REGULARIZERS.get("nuclear_weight")(low_rank, LAYOUT)) == pytest.approx(float(low_rank.norm()), rel=1e-5)


def _descend(name, x, steps=20, lr=0.01):
    """Plain gradient descent on one regularizer: where does it pull?"""
    x = x.clone().requires_grad_(True)
    for _ in range(steps):
        (g,) = torch.autograd.grad(REGULARIZERS.get(name)(x, LAYOUT), [x])
        with torch.no_grad():
            x -= lr * g / g.abs().max().clamp(min=1e-12)
    return x.detach()


def test_tv_pulls_a_spike_towards_its_neighbours():
    x = torch.zeros(1, 48, 76)
    x[0, 20, 5] = 1.0
    y = _descend("tv_weight", x)
    assert 0 < float(y[0, 20, 5]) < 1.0  # the spike shrinks ...
    assert float(y[0, 19, 5]) > 0 and float(y[0, 21, 5]) > 0  # ... and its neighbours rise to meet it
    assert float(REGULARIZERS.get("tv_weight")(y, LAYOUT)) < float(REGULARIZERS.get("tv_weight")(x, LAYOUT))


def test_binary_constraint_pulls_binary_columns_to_the_nearest_of_0_and_1():
    x = torch.full((1, 48, 76), 0.3)
    x[..., 60:] = 0.7  # mask columns (59..75) above 0.5, except column 59
    x[..., 62] = -0.2  # outside [0, 1]: pulled back up to 0
    y = _descend("binary_weight", x)
    binary = LAYOUT.binary
    assert torch.all(y[..., ~binary] == x[..., ~binary])  # continuous columns feel nothing
    assert torch.all(y[..., :59][..., binary[:59]] < 0.3) and torch.all(y[..., 59] < 0.3)
    assert torch.all(y[..., 60:62] > 0.7) and torch.all(y[..., 63:] > 0.7)
    assert torch.all(y[..., 62].abs() < 0.05)  # ends at 0 (up to the step size)


def test_nuclear_norm_pulls_towards_low_rank():
    torch.manual_seed(0)
    x = (torch.outer(torch.randn(48), torch.randn(76)) + 0.3 * torch.randn(48, 76)).unsqueeze(0)
    y = _descend("nuclear_weight", x, steps=30)
    s_x, s_y = torch.linalg.svdvals(x[0]), torch.linalg.svdvals(y[0])
    assert float(s_y[1:].sum() / s_y[0]) < 0.8 * float(s_x[1:].sum() / s_x[0])  # the tail shrinks relative to the top
    assert float(REGULARIZERS.get("nuclear_weight")(y, LAYOUT)) < float(REGULARIZERS.get("nuclear_weight")(x, LAYOUT))


def test_projection_makes_groups_one_hot_and_masks_binary():
    x = torch.rand(2, 48, 76)
    y = project(x, LAYOUT)
    for start, stop in LAYOUT.groups:
        assert torch.all(y[..., start:stop].sum(-1) == 1)
        assert torch.equal(y[..., start:stop].argmax(-1), x[..., start:stop].argmax(-1))
    assert set(y[..., LAYOUT.flags].unique().tolist()) <= {0.0, 1.0}
    cont = ~LAYOUT.binary
    assert torch.equal(y[..., cont], x[..., cont])


def test_record_metrics_after_matching():
    torch.manual_seed(0)
    truth = project(torch.randn(3, 48, 76), LAYOUT)
    perm = torch.tensor([2, 0, 1])
    recon = torch.empty_like(truth)
    recon[perm] = truth
    true_labels = torch.tensor([1, 0, 0])
    recon_labels = torch.empty_like(true_labels)
    recon_labels[perm] = true_labels
    m = evaluate_records(reconstruction=recon, truth=truth, schema=SCHEMA, recon_labels=recon_labels,
                         true_labels=true_labels)
    assert m["fmse"] == 0.0 and m["similarity"] == pytest.approx(1.0) and m["feature_accuracy"] == 1.0
    assert m["assignment"] == perm.tolist() and m["label_accuracy"] == 1.0
    wrong = truth.clone()
    wrong[0, 0, 0:2] = torch.tensor([0.0, 1.0]) if truth[0, 0, 0] == 1 else torch.tensor([1.0, 0.0])  # capillary refill
    wrong[1, :, SCHEMA.column_names.index("Glucose")] += 0.05  # within the tolerance
    wrong[2, :, SCHEMA.column_names.index("Heart Rate")] += 0.5  # outside it
    m = evaluate_records(reconstruction=wrong, truth=truth, schema=SCHEMA)
    assert m["categorical_accuracy"] == pytest.approx(1 - 1 / (3 * 48 * 5))
    assert m["mask_accuracy"] == 1.0
    assert m["continuous_accuracy"] == pytest.approx(1 - 48 / (3 * 48 * 12))


def test_attack_recovers_a_table_row_and_modes_differ():
    obs, truth = simulate(Scenario(dataset="breast-cancer", model="logreg", batch_size=1, seed=1))
    assert "schema" in obs.data and len(obs.data["prior"]["mean"]) == 30
    rec = create_attack("tabular", iterations=1000).run(obs, generator=torch.Generator().manual_seed(0))
    m = evaluate_records(reconstruction=rec.inputs, truth=truth.inputs)
    assert m["fmse"] < 0.01 and m["similarity"] > 0.9999  # measured 3.4e-3 and 0.99999
    naive = create_attack("tabular", mode="naive", iterations=5)
    assert naive.config.tv_weight == 0.1 and naive.config.anneal == "linear"
    assert create_attack("tabular").config.anneal == "cosine"


@pytest.mark.parametrize("model", ["gru", "lstm"])
def test_attack_on_recurrent_victims_moves_towards_the_record(model):
    obs, truth = simulate(Scenario(dataset="ihm-synthetic", model=model, batch_size=1, seed=0,
                                   model_options={"hidden": 8}))

    def run(iterations):
        rec = create_attack("tabular", iterations=iterations).run(obs, generator=torch.Generator().manual_seed(0))
        return rec, evaluate_records(reconstruction=rec.inputs, truth=truth.inputs, schema=SCHEMA)

    start, start_m = run(1)  # the (projected) Gaussian start, same seed
    rec, m = run(40)
    assert rec.loss_trace[-1] < 0.7 * rec.loss_trace[0]  # gru 0.34, lstm 0.52 after 60 steps; lstm 0.76 after 25
    assert m["fmse"] < start_m["fmse"] and m["similarity"] > start_m["similarity"]


def test_attack_config_errors(tmp_path):
    with pytest.raises(GradleakError, match="unknown mode"):
        create_attack("tabular", mode="clever")
    with pytest.raises(GradleakError, match="tv_weight"):
        create_attack("tabular", tv_weight=-1.0)
    bad = tmp_path / "w.json"
    bad.write_text(json.dumps({"format": "something"}))
    with pytest.raises(GradleakError, match="gradleak tune"):
        create_attack("tabular", weights_file=str(bad))


def test_tune_tiny_budget_writes_weights_the_attack_accepts(tmp_path, capsys):
    pytest.importorskip("optuna")
    out = tmp_path / "tune"
    code = main(["tune", "--dataset", "breast-cancer", "--model", "logreg", "--trials", "2", "--batches", "1",
                 "--iterations", "10", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "weights.json").read_text())
    assert result["sampler"] == "tpe" and len(result["trials"]) == 2 and result["startup_trials"] == 2
    assert result["scenario"]["split"] == "test"  # the attacker's own data, never the clients' split
    assert result["weights"]["tv_weight"] == 0.0  # flat rows have no time axis
    assert 1e-8 <= result["weights"]["nuclear_weight"] <= 1.0
    attack = create_attack("tabular", weights_file=str(out / "weights.json"))
    assert attack.config.nuclear_weight == pytest.approx(result["weights"]["nuclear_weight"])
    assert (out / "tuning.png").is_file()


def test_tune_gp_sampler_on_time_series_and_refuses_the_clients_split():
    pytest.importorskip("optuna")
    from gradleak.tuning import TuneConfig, tune

    scenario = Scenario(dataset="ihm-synthetic", model="logreg", split="test")
    result = tune(scenario, attack_options={"iterations": 3}, config=TuneConfig(trials=2, batches=1, sampler="gp"))
    assert result["sampler"] == "gp" and set(result["weights"]) == {"tv_weight", "binary_weight", "nuclear_weight"}
    assert all(1e-8 <= v <= 1.0 for v in result["weights"].values())  # time series: TV is tuned too
    assert len(result["prior"]["mean"]) == 76
    with pytest.raises(GradleakError, match="attacker's own split"):
        tune(Scenario(dataset="ihm-synthetic", model="logreg", split="train"), config=TuneConfig(trials=1))


def test_cli_attack_on_ihm_synthetic_writes_record_metrics_and_heatmap(tmp_path):
    out = tmp_path / "run"
    code = main(["attack", "--dataset", "ihm-synthetic", "--model", "logreg", "--attack", "tabular",
                 "--batch-size", "2", "--iterations", "5", "--seed", "0", "--quiet", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"fmse", "similarity", "feature_accuracy", "mask_accuracy"} <= set(metrics)
    assert metrics["data_kind"] == "timeseries" and 0 <= metrics["feature_accuracy"] <= 1
    assert (out / "reconstruction.png").stat().st_size > 1000


def test_the_gaussian_prior_is_the_attackers_own_split():
    from gradleak.data.schema import column_statistics
    from gradleak.priors.data import attacker_data

    obs, truth = simulate(Scenario(dataset="breast-cancer", model="mlp", batch_size=2, seed=3))
    own = attacker_data("breast-cancer").data  # the test split; clients hold train
    assert obs.data["prior"] == column_statistics(own.inputs)
    assert not any(bool((own.inputs == row).all(-1).any()) for row in truth.inputs)  # never the victim's records
    tuning, batch = simulate(Scenario(dataset="breast-cancer", model="mlp", batch_size=1, seed=0, split="test"))
    assert tuning.data["prior"] == column_statistics(own.without(batch.indices).inputs)  # rounds on own data


def test_default_record_attack_uses_the_shipped_tuned_weights():
    from gradleak.attacks.tabular import read_weights, shipped_weights

    path = shipped_weights(dataset="ihm-synthetic", model="mlp")
    shipped = read_weights(path)
    assert shipped["scenario"]["split"] == "test" and shipped["scenario"]["batch_size"] == 1  # attacker's own, b1
    obs, _ = simulate(Scenario(dataset="ihm-synthetic", model="mlp", batch_size=1, seed=0))
    rec = create_attack("tabular", iterations=2).run(obs, generator=torch.Generator().manual_seed(0))
    assert {k: rec.config[k] for k in shipped["weights"]} == shipped["weights"]
    assert "binary_weight from shipped ihm-synthetic_mlp.json" in rec.notes[-1]
    explicit = create_attack("tabular", iterations=2, tv_weight=0.5).run(obs, generator=torch.Generator())
    assert explicit.config["tv_weight"] == 0.5 and explicit.config["binary_weight"] == shipped["weights"]["binary_weight"]
    study = create_attack("tabular", iterations=2, shipped=False).run(obs, generator=torch.Generator())
    assert study.config["nuclear_weight"] == 1e-5 and "nuclear_weight from prior default" in study.notes[-1]
    naive = create_attack("tabular", mode="naive", iterations=2).run(obs, generator=torch.Generator())
    assert naive.config["tv_weight"] == 0.1  # the naive baseline keeps the study's settings
    logreg, _ = simulate(Scenario(dataset="ihm-synthetic", model="logreg", batch_size=1, seed=0))
    other = create_attack("tabular", iterations=2).run(logreg, generator=torch.Generator())
    assert other.config["nuclear_weight"] == 1e-5  # nothing shipped for this model: the study's weights


@pytest.mark.slow
def test_default_cli_record_attack_meets_the_fmse_goal(tmp_path):
    # measured: FMSE 3.8e-11 (seed 0, 5000 iterations; benchmarks/results/tabular_cli_default/)
    out = tmp_path / "t"
    assert main(["attack", "--dataset", "ihm-synthetic", "--model", "mlp", "--attack", "tabular", "--batch-size", "1",
                 "--seed", "0", "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["fmse"] <= 1e-6


def test_zero_turns_off_the_stopping_rule_and_the_thread_setting():
    """README: `--option patience=0` runs the whole budget; threads=0 leaves torch's setting."""
    obs, _ = simulate(Scenario(dataset="breast-cancer", model="logreg", batch_size=1, seed=0))
    rec = create_attack("tabular", patience=0, threads=0, iterations=30).run(obs, generator=torch.Generator())
    assert rec.iterations_used == 30
    with pytest.raises(GradleakError, match="iterations"):
        create_attack("tabular", iterations=0)


def test_smoothed_temporal_tv_is_charbonnier_and_tends_to_the_plain_one():
    x = torch.randn(2, 48, 76, dtype=torch.float64)
    d = x[:, 1:] - x[:, :-1]
    tv = REGULARIZERS.get("tv_weight")
    assert float(tv(x, LAYOUT, eps=0.01)) == pytest.approx(float((d.square() + 0.01).sqrt().mean()))
    assert float(tv(x, LAYOUT, eps=1e-12)) == pytest.approx(float(tv(x, LAYOUT)), rel=1e-5)


def test_sequence_mode_resolves_its_own_defaults_and_validates():
    seq = create_attack("tabular", mode="sequence").config
    assert (seq.optimizer, seq.start_scale, seq.stages, seq.iterations, seq.precision) == ("lbfgs", 0.1, 4, 80, "float64")
    assert seq.tv_eps == 1e-4 and seq.nuclear_weight == 0.0
    prior = create_attack("tabular").config  # the study's mode keeps the study's optimiser and budget
    assert (prior.optimizer, prior.start_scale, prior.stages, prior.iterations, prior.lr) == ("adam", 1.0, 1, 5000, 0.01)
    assert create_attack("tabular", mode="sequence", iterations=8, optimizer="adam").config.optimizer == "adam"
    for bad, match in (({"mode": "sequence", "stages": 100}, "stages"),
                       ({"mode": "sequence", "tv_eps": -1.0}, "tv_eps"),
                       ({"mode": "sequence", "stage_decay": 0.5}, "stage_decay"),
                       ({"start_scale": -0.1}, "start_scale"),
                       ({"start_scale": float("nan")}, "start_scale"),
                       ({"optimizer": "sgd"}, "optimizer")):
        with pytest.raises(GradleakError, match=match):
            create_attack("tabular", **bad)


def test_sequence_mode_beats_the_prior_mode_on_a_gru_at_the_same_budget():
    """Measured in benchmarks/results/gru_records at full size; here a small GRU and 4 L-BFGS steps."""
    obs, truth = simulate(Scenario(dataset="ihm-synthetic", model="gru", batch_size=1, seed=0,
                                   model_options={"hidden": 8}))
    sims = {}
    for mode, iterations in (("sequence", 4), ("prior", 100)):  # 4 L-BFGS steps evaluate the update <= 100 times
        rec = create_attack("tabular", mode=mode, iterations=iterations).run(obs, generator=torch.Generator().manual_seed(0))
        sims[mode] = evaluate_records(reconstruction=rec.inputs, truth=truth.inputs, schema=SCHEMA)["similarity"]
    assert sims["sequence"] > sims["prior"] + 0.1, sims  # measured 0.622 vs 0.375


def test_recurrent_victims_get_the_sequence_mode_unless_the_user_chose_one():
    from gradleak.attacks.base import for_victim

    gru, _ = simulate(Scenario(dataset="ihm-synthetic", model="gru", batch_size=1, seed=0, model_options={"hidden": 8}))
    mlp, _ = simulate(Scenario(dataset="breast-cancer", model="mlp", batch_size=1, seed=0))
    assert for_victim("tabular", {}, gru) == {"mode": "sequence"}
    assert for_victim("tabular", {"restarts": 1}, gru) == {"restarts": 1, "mode": "sequence"}
    for chosen in ({"mode": "prior"}, {"iterations": 50}, {"optimizer": "adam"}):  # the user's schedule wins
        assert for_victim("tabular", chosen, gru) == chosen
    assert for_victim("tabular", {}, mlp) == {} and for_victim("ig", {}, gru) == {}


def test_flat_tables_at_larger_batches_get_restarts_whose_agreement_is_the_confidence():
    from gradleak.attacks.base import for_victim
    from gradleak.attacks.tabular import ENSEMBLE_RESTARTS, restart_agreement
    from gradleak.data.schema import build_schema

    observation, truth = simulate(Scenario(dataset="gbsg2", model="mlp", batch_size=8, seed=0))
    assert for_victim("tabular", {}, observation) == {"restarts": ENSEMBLE_RESTARTS}
    assert for_victim("tabular", {"restarts": 1}, observation) == {"restarts": 1}  # the user's choice wins
    rec = create_attack("tabular", restarts=2, iterations=60).run(observation, generator=torch.Generator().manual_seed(0))
    assert rec.confidence is not None and rec.confidence.shape == (8, len(observation.data["schema"]["features"]))
    assert bool(((rec.confidence >= 0) & (rec.confidence <= 1)).all())
    # agreement on a constructed ensemble: identical members are fully confident, a split vote is not
    schema = build_schema([("age", "continuous", ()), ("sex", "binary", ())], time_steps=None)
    a = torch.tensor([[0.0, 1.0], [3.0, 0.0]])
    b = torch.tensor([[3.0, 0.0], [0.5, 0.0]])  # sample order swapped; first sample's age off by 0.5, sex flipped
    conf = restart_agreement([a, a.clone(), b], schema=schema, chosen=0)
    assert conf[1].tolist() == pytest.approx([1.0, 1.0])  # the second sample: every member agrees
    assert conf[0, 0] < 0.5 and 0 < conf[0, 1] < 1  # the first: continuous spread, 2 of 3 votes on sex
