"""Attacks: registry, configs, behaviour on small exact cases, restart choice, fedavg."""

from __future__ import annotations

import math

import pytest
import torch

from gradleak.attacks import ATTACKS, DISTANCES, create_attack
from gradleak.attacks.inverting import total_variation
from gradleak.attacks.loop import Candidate, LoopSettings, best_of_restarts, optimise
from gradleak.errors import GradleakError, UnknownNameError
from gradleak.fl.protocol import Protocol
from gradleak.metrics import evaluate_images

from conftest import make_observation


def _psnr(reconstruction, truth) -> float:
    return evaluate_images(reconstruction=reconstruction.inputs.clamp(0, 1), truth=truth.inputs)["psnr"]


def test_registry_lists_the_attacks():
    assert {"dlg", "idlg", "ig"} <= set(ATTACKS.names())
    with pytest.raises(UnknownNameError, match=r"unknown attack 'dlgg'; choose one of: .*dlg, .*idlg, ig"):
        create_attack("dlgg")


def test_unknown_option_names_valid_ones():
    with pytest.raises(GradleakError, match="tv_weight"):
        create_attack("ig", tv_wieght=1.0)


def test_bad_loop_settings():
    with pytest.raises(GradleakError, match="iterations"):
        LoopSettings(optimizer="adam", iterations=0, lr=0.1)
    with pytest.raises(UnknownNameError, match="adam, lbfgs"):
        LoopSettings(optimizer="sgd", iterations=1, lr=0.1)


def test_idlg_recovers_digit_exactly(digits_observation):
    obs, truth = digits_observation
    rec = create_attack("idlg", iterations=60).run(obs)
    assert rec.labels.tolist() == truth.labels.tolist() and rec.label_method == "idlg-bias"
    assert _psnr(rec, truth) > 40
    assert rec.gradient_loss < 1e-6 and rec.seconds > 0


def test_dlg_learns_label_and_image(digits_observation):
    obs, truth = digits_observation
    rec = create_attack("dlg", iterations=60).run(obs, generator=torch.Generator().manual_seed(1))
    assert rec.label_method == "joint-optimisation"
    assert rec.labels.tolist() == truth.labels.tolist()
    assert _psnr(rec, truth) > 30


def test_idlg_inverts_fedavg_local_steps(fedavg_observation):
    """The attack re-runs the client's two local SGD steps differentiably."""
    obs, truth = fedavg_observation
    rec = create_attack("idlg", iterations=60).run(obs)
    assert _psnr(rec, truth) > 35


def test_ig_reduces_gradient_loss_and_beats_random():
    obs, truth = make_observation(dataset="faces", model="lenet")
    rec = create_attack("ig", iterations=150).run(obs)
    assert rec.loss_trace[-1] < 0.1 * rec.loss_trace[0]
    assert rec.inputs.min() >= 0 and rec.inputs.max() <= 1  # box constraint
    random_psnr = evaluate_images(reconstruction=torch.rand_like(truth.inputs), truth=truth.inputs)["psnr"]
    assert _psnr(rec, truth) > random_psnr + 8


def test_same_seed_same_result(digits_observation):
    obs, _ = digits_observation
    runs = [create_attack("ig", iterations=20).run(obs, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(runs[0].inputs, runs[1].inputs) and runs[0].loss_trace == runs[1].loss_trace


def test_restarts_are_chosen_by_gradient_loss(digits_observation):
    obs, _ = digits_observation
    rec = create_attack("ig", iterations=10, restarts=3).run(obs)
    assert len(rec.restart_losses) == 3 and len(rec.restart_traces) == 3
    assert rec.gradient_loss == min(rec.restart_losses)


def test_best_of_restarts_treats_nan_as_worst():
    c = [Candidate(torch.zeros(1), torch.zeros(1), loss, []) for loss in (math.nan, 0.5, 0.2, math.inf)]
    assert best_of_restarts(c) == 2


def test_attack_never_receives_ground_truth():
    """The public entry point takes the observation only (no truth parameter anywhere)."""
    import inspect

    for name in ATTACKS.names():
        params = inspect.signature(ATTACKS.get(name).run).parameters
        assert not any("truth" in p for p in params)


def test_distances():
    from gradleak.attacks.objective import flatten

    a = flatten([torch.tensor([1.0, 0.0]), torch.tensor([2.0])])
    assert float(DISTANCES.get("l2")(a, a)) == 0.0
    assert float(DISTANCES.get("l2")(a, 2 * a)) == pytest.approx(5.0)
    assert abs(float(DISTANCES.get("cosine")(a, 2 * a))) < 1e-6  # scale-invariant
    assert float(DISTANCES.get("cosine")(a, -a)) == pytest.approx(2.0)


def test_cosine_distance_accumulates_in_float64():
    """A float32 update of 1M entries: the distance of a vector to itself is ~0, not ~1e-5 (float32 sums)."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(1_000_000, generator=g) * torch.rand(1_000_000, generator=g) ** 4
    d = DISTANCES.get("cosine")(u, u.clone())
    assert d.dtype == torch.float32
    assert abs(float(d)) < 1e-7
    v = u + 1e-3 * torch.randn(1_000_000, generator=g)
    ref = 1 - torch.dot(u.double(), v.double()) / (u.double().norm() * v.double().norm())
    assert float(DISTANCES.get("cosine")(v, u)) == pytest.approx(float(ref), rel=1e-4)


def test_total_variation_any_channels():
    assert float(total_variation(torch.ones(2, 1, 5, 5))) == 0.0
    x = torch.zeros(1, 4, 2, 2)
    x[..., 0, 0] = 1
    assert float(total_variation(x)) == pytest.approx(1.0)


def test_lbfgs_stops_on_nan_and_reports_progress():
    x = torch.ones(3, requires_grad=True)
    seen = []
    trace = optimise(objective=lambda: (x * float("nan")).sum(), variables=[x],
                     settings=LoopSettings(optimizer="lbfgs", iterations=5, lr=1.0), progress=seen.append)
    assert len(trace) == 1 and sum(seen) == 5


def test_batch_attack_shapes():
    obs, truth = make_observation(batch_size=4, protocol=Protocol(name="fedavg", lr=0.05, local_batch_size=2))
    rec = create_attack("ig", iterations=5).run(obs)
    assert rec.inputs.shape == truth.inputs.shape and rec.labels.shape == (4,)


@pytest.mark.parametrize("distance", ["l2", "cosine"])
@pytest.mark.parametrize("protocol", [Protocol(), Protocol(name="fedavg", lr=0.1, local_epochs=2, local_batch_size=1)])
def test_matcher_is_zero_at_the_truth_and_positive_elsewhere(distance, protocol):
    """The attacker's simulation reproduces the client's update exactly for the true batch."""
    from gradleak.attacks import GradientMatcher

    obs, truth = make_observation(batch_size=2, protocol=protocol)
    matcher = GradientMatcher(obs, distance=distance)
    assert float(matcher(truth.inputs, truth.labels).detach()) < 1e-6
    assert float(matcher(torch.rand_like(truth.inputs), truth.labels).detach()) > 1e-3


@pytest.mark.parametrize("options,needle", [({"distance": "l1"}, "cosine, l2"), ({"precision": "half"}, "float64"),
                                            ({"restarts": 0}, "restarts")])
def test_bad_config_values_fail_at_creation(options, needle):
    for name in ("dlg", "ig"):
        with pytest.raises(GradleakError, match=needle):
            create_attack(name, **options)


# ---------------------------------------------------------------------------- entry selection
def test_entry_mask_specs_select_what_they_say():
    from gradleak.attacks.objective import entry_mask

    parts = [torch.tensor([0.0, 3.0, -1.0]), torch.tensor([[10.0, 0.0]]), torch.tensor([0.5])]
    assert entry_mask("all", parts) is None
    assert entry_mask("nonzero", parts).tolist() == [False, True, True, True, False, True]
    assert entry_mask("top-layers:1", parts).tolist() == [False, False, False, True, True, False]
    assert entry_mask("largest:0.34", parts).tolist() == [False, True, False, True, False, False]


@pytest.mark.parametrize("spec", ["bogus", "top-layers:0", "top-layers:x", "largest:0", "largest:1.5", "nonzero:3"])
def test_bad_entry_specs_fail_at_config_time(spec):
    with pytest.raises(GradleakError):
        create_attack("ig", entries=spec)


def test_matching_nonzero_entries_ignores_pruned_ones():
    import dataclasses

    from gradleak.attacks import GradientMatcher

    obs, _ = make_observation()
    pruned = {k: torch.where(v.abs() >= v.abs().median(), v, torch.zeros_like(v)) for k, v in obs.update.items()}
    obs = dataclasses.replace(obs, update=pruned)
    full = GradientMatcher(obs, distance="l2")
    kept = GradientMatcher(obs, distance="l2", entries="nonzero")
    assert kept.target.numel() < full.target.numel()
    assert bool((kept.target != 0).all())


@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_prepared_distance_equals_the_flattened_one(distance):
    """The hot path (target prepared once, per-tensor float64 partial sums) computes the same
    distance as the flattened reference, and stays exact at the truth on a ~1M-entry update."""
    from gradleak.attacks.objective import DISTANCES, GradientMatcher, flatten
    from gradleak.scenario import Scenario, simulate

    observation, truth = simulate(Scenario(dataset="histology", model="mlp", batch_size=4,
                                           model_options={"hidden": [1024, 256]}))
    matcher = GradientMatcher(observation, distance=distance)
    assert matcher.prepared is not None
    x = torch.rand_like(truth.inputs)
    update = matcher.update(x, truth.labels, create_graph=False)
    reference = DISTANCES.get(distance)(flatten(update), matcher.target)
    assert float(matcher.measure(update)) == pytest.approx(float(reference), rel=1e-5)
    at_truth = matcher.loss_value(truth.inputs, truth.labels)
    assert abs(at_truth) < (1e-9 if distance == "cosine" else 1e-9)  # no float32 cancellation (was -2e-5)
