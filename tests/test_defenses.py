"""Defense mechanics: each mechanism against an independent statement of what it must do."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gradleak.defenses import apply_defense, parse_defense
from gradleak.defenses.aggregation import mask_updates, secure_sum
from gradleak.defenses.bido import normalized_hsic
from gradleak.defenses.update import global_norm
from gradleak.errors import GradleakError
from gradleak.fl.protocol import Protocol, client_update
from gradleak.models import complete_spec, create_model
from gradleak.models.base import ModelSpec


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _update(seed: int = 0) -> dict[str, torch.Tensor]:
    g = _gen(seed)
    return {"a": torch.randn(40, 25, generator=g), "b": 3 * torch.randn(300, generator=g), "c": torch.randn(7, generator=g)}


def _digits_model(name: str = "lenet", seed: int = 0, **options):
    torch.manual_seed(seed)
    spec = complete_spec(ModelSpec(name=name, input_shape=(1, 8, 8), num_classes=10, options=options))
    return create_model(spec), spec


def _digits_batch(n: int, seed: int = 0):
    g = _gen(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(10, (n,), generator=g)


# ------------------------------------------------------------------------ update-level noise
def test_gaussian_noise_statistics_and_reproducibility():
    zeros = {"w": torch.zeros(200_000, dtype=torch.float64)}
    noisy = parse_defense("noise:0.5").postprocess(zeros, generator=_gen())["w"]
    assert abs(float(noisy.mean())) < 5 * 0.5 / math.sqrt(noisy.numel())
    assert float(noisy.std()) == pytest.approx(0.5, rel=0.01)
    assert torch.equal(noisy, parse_defense("noise:0.5").postprocess(zeros, generator=_gen())["w"])
    assert torch.equal(parse_defense("noise:0").postprocess(_update(), generator=_gen())["a"], _update()["a"])


def test_laplace_noise_statistics():
    b = 0.2
    noisy = parse_defense(f"laplace:{b}").postprocess({"w": torch.zeros(200_000, dtype=torch.float64)},
                                                       generator=_gen())["w"]
    assert abs(float(noisy.mean())) < 5 * math.sqrt(2) * b / math.sqrt(noisy.numel())
    assert float(noisy.abs().mean()) == pytest.approx(b, rel=0.01)  # E|X| = b
    assert float(noisy.var()) == pytest.approx(2 * b * b, rel=0.03)  # Var = 2 b^2 (heavier tails than Gaussian)


# ------------------------------------------------------------------------------ clipping
def test_clipping_bounds_the_global_norm_and_keeps_the_direction():
    update = _update()
    norm = global_norm(update)
    assert norm > 2.0
    clipped = parse_defense("clip:2").postprocess(update, generator=_gen())
    assert global_norm(clipped) == pytest.approx(2.0, rel=1e-6)
    for k in update:
        torch.testing.assert_close(clipped[k], update[k] * (2.0 / norm))
    small = parse_defense(f"clip:{2 * norm}").postprocess(update, generator=_gen())
    assert all(torch.equal(small[k], update[k]) for k in update)


# ------------------------------------------------------------------------------- pruning
def test_pruning_per_tensor_keeps_the_largest_fraction_of_each_tensor():
    update = _update()
    pruned = parse_defense("prune:0.9").postprocess(update, generator=_gen())
    for k, v in update.items():
        kept = pruned[k] != 0
        assert int(kept.sum()) == max(1, round(0.1 * v.numel()))
        assert torch.equal(pruned[k][kept], v[kept])  # survivors unchanged
        assert float(v[kept].abs().min()) >= float(v[~kept].abs().max())


def test_pruning_global_ranks_all_entries_together():
    update = _update()
    pruned = parse_defense("prune-global:0.75").postprocess(update, generator=_gen())
    flat_in = torch.cat([v.reshape(-1) for v in update.values()])
    flat_out = torch.cat([pruned[k].reshape(-1) for k in update])
    kept = flat_out != 0
    assert int(kept.sum()) == round(0.25 * flat_in.numel())
    assert float(flat_in[kept].abs().min()) >= float(flat_in[~kept].abs().max())
    assert int((pruned["b"] != 0).sum()) > int((pruned["a"] != 0).sum()) / 4  # larger-scale tensor keeps more


# ---------------------------------------------------------------------- secure aggregation
def test_secure_aggregation_masks_individual_updates_but_not_their_sum():
    updates = [_update(seed) for seed in range(4)]
    masked = mask_updates(updates, generator=_gen())
    total = secure_sum(masked, dtype=torch.float64)
    for k in updates[0]:
        truth = sum(u[k].double() for u in updates)
        torch.testing.assert_close(total[k], truth, atol=1e-9, rtol=0)
        for u, m in zip(updates, masked):  # each masked update is far from the client's own
            assert float((m[k] - u[k]).abs().mean()) > 1.0


def test_secure_aggregation_observation_is_the_mean_update_of_all_k_batches():
    model, _ = _digits_model()
    x, y = _digits_batch(4)
    defense = parse_defense("secagg:2")
    assert defense.batch_size(2) == 4
    seen = defense.shared_update(model, inputs=x, labels=y, protocol=Protocol(), generator=_gen())
    whole = client_update(model, inputs=x, labels=y, protocol=Protocol())  # mean loss over all 4 samples
    for k in whole:
        torch.testing.assert_close(seen[k], whole[k], atol=1e-5, rtol=1e-4)


# -------------------------------------------------------------------------------- DP-SGD
def test_dpsgd_without_noise_releases_the_clipped_gradient_and_reports_epsilon():
    pytest.importorskip("opacus")
    from gradleak.defenses.dpsgd import MAX_GRAD_NORM

    model, _ = _digits_model()
    x, y = _digits_batch(1)
    exact = client_update(model, inputs=x, labels=y, protocol=Protocol())
    clipped = {k: v * min(1.0, MAX_GRAD_NORM / global_norm(exact)) for k, v in exact.items()}
    silent = parse_defense("dpsgd:0")
    released = silent.shared_update(model, inputs=x, labels=y, protocol=Protocol(), generator=_gen())
    for k in exact:
        torch.testing.assert_close(released[k], clipped[k], atol=1e-5, rtol=1e-4)
    assert silent.describe()["epsilon"] is None  # no noise: no finite guarantee

    noisy = parse_defense("dpsgd:1.0")
    assert noisy.describe()["epsilon"] is None  # nothing released yet
    out = noisy.shared_update(model, inputs=x, labels=y, protocol=Protocol(), generator=_gen())
    assert global_norm({k: out[k] - clipped[k] for k in out}) > 10 * MAX_GRAD_NORM  # sigma * C per entry
    first = noisy.describe()["epsilon"]
    assert first is not None and 0 < first < math.inf
    assert noisy.describe()["epsilon_release"] == pytest.approx(first)  # one release at sampling rate 1
    noisy.shared_update(model, inputs=x, labels=y, protocol=Protocol(), generator=_gen())
    assert noisy.describe()["epsilon"] > first  # the accountant composes releases


def test_dpsgd_federated_client_accounts_poisson_steps():
    pytest.importorskip("opacus")
    model, _ = _digits_model()
    x, y = _digits_batch(64)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    defense = parse_defense("dpsgd:1.0")
    delta = defense.train_client(model, inputs=x, labels=y, steps=3, batch_size=8, lr=0.1, generator=_gen(), client=0)
    assert all(torch.equal(v, start[k]) for k, v in model.named_parameters())  # the model is left unchanged
    assert global_norm(delta) > 0
    eps3 = defense.epsilon(0)
    defense.train_client(model, inputs=x, labels=y, steps=3, batch_size=8, lr=0.1, generator=_gen(1), client=0)
    assert 0 < eps3 < defense.epsilon(0) < math.inf


# ------------------------------------------------------------------- latent perturbation
def test_minimax_step_moves_the_decoder_and_every_defender_part():
    defense = parse_defense("perturb:1")
    base = complete_spec(ModelSpec(name="lenet", input_shape=(1, 8, 8), num_classes=10))
    spec = defense.model_spec(base)
    assert spec.name == "latent-perturb"
    torch.manual_seed(0)
    model = create_model(spec)
    x, y = _digits_batch(16)
    g = _gen()
    defense.prepare(model, generator=g, client=0)
    decoder, _ = defense.decoder(model, shape=(1, 8, 8), client=0)
    dec_before = [p.detach().clone() for p in decoder.parameters()]
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    delta = defense.train_client(model, inputs=x, labels=y, steps=1, batch_size=16, lr=0.1, generator=g, client=0)
    assert any(not torch.equal(a, b) for a, b in zip(dec_before, decoder.parameters()))  # attacker moved
    for part in ("rho", "net.fc.weight", "net.body.0.weight"):  # perturbation, predictor, encoder moved
        assert float(delta[part].abs().max()) > 0, part
    assert all(torch.equal(v, before[k]) for k, v in model.named_parameters())  # update returned, model restored


def test_latent_noise_only_while_sampling():
    defense = parse_defense("perturb")
    torch.manual_seed(0)
    model = create_model(defense.model_spec(complete_spec(ModelSpec(name="lenet", input_shape=(1, 8, 8), num_classes=10))))
    x, _ = _digits_batch(4)
    clean = model(x)
    torch.testing.assert_close(model(x), clean)  # deterministic without sampling (the attacker's view)
    model.sampling, model.generator = True, _gen()
    assert not torch.allclose(model(x), clean)
    assert float(model.scale.detach().mean()) == pytest.approx(0.5, rel=1e-5)  # the initial latent noise scale


# ---------------------------------------------------------------------------------- BiDO
def test_normalized_hsic_separates_dependent_from_independent_samples():
    g = _gen()
    x = torch.randn(64, 1, generator=g)
    independent = torch.randn(64, 1, generator=g)
    dependent = x**2 + 0.1 * torch.randn(64, 1, generator=g)
    h_self, h_dep, h_ind = normalized_hsic(x, x), normalized_hsic(x, dependent), normalized_hsic(x, independent)
    assert h_self > h_dep > 5 * h_ind and h_ind >= 0
    torch.testing.assert_close(normalized_hsic(x, dependent), normalized_hsic(dependent, x))
    assert float(normalized_hsic(x[:1], x[:1])) == 0.0  # one sample carries no dependence


def test_bido_loss_adds_the_dependence_terms_on_batches_only():
    defense = parse_defense("bido:0.05")
    model, _ = _digits_model()
    x, y = _digits_batch(16)
    ce = F.cross_entropy(model(x), y)
    _, hx, hy = defense.dependence(model, x, y)
    assert float(hx.detach()) > 0 and float(hy.detach()) > 0
    torch.testing.assert_close(defense.loss(model, x, y), ce + 0.05 * hx - 0.5 * hy)
    torch.testing.assert_close(defense.loss(model, x[:1], y[:1]), F.cross_entropy(model(x[:1]), y[:1]))


# ----------------------------------------------------------------------- specs and wiring
@pytest.mark.parametrize("spec, needle", [
    ("bogus", "bogus"), ("noise:-0.1", "noise scale"), ("prune:1", "[0, 1)"), ("prune:-0.2", "[0, 1)"),
    ("noise:abc", "not a number"), ("none:1", "takes no value"), ("noise", "needs a value"),
    ("noise:nan", "finite"), ("secagg:1.5", "integer"), ("", "empty"),
])
def test_invalid_specs_are_refused(spec, needle):
    with pytest.raises(GradleakError) as exc:
        parse_defense(spec)
    assert needle in str(exc.value)


def test_apply_defense_to_a_finished_observation(digits_observation):
    observation, _ = digits_observation
    pruned = apply_defense(parse_defense("prune:0.5"), observation, generator=_gen())
    assert pruned.defense["spec"] == "prune:0.5"
    for k, v in pruned.update.items():  # at most half survive (some gradient entries are exactly zero)
        assert int((v != 0).sum()) <= max(1, round(0.5 * v.numel()))
        assert torch.equal(v[v != 0], observation.update[k][v != 0])
    with pytest.raises(GradleakError, match="scenario"):
        apply_defense(parse_defense("bido"), observation, generator=_gen())


def test_scenario_records_the_defense_and_adaptive_attack_matches_survivors():
    from gradleak.scenario import Scenario, simulate

    observation, _ = simulate(Scenario(dataset="digits", model="lenet", defense="prune:0.9"))
    assert observation.defense["spec"] == "prune:0.9" and "survived" in observation.defense["attacker_knowledge"]
    weight = observation.update["fc.weight"]
    assert int((weight != 0).sum()) == round(0.1 * weight.numel())
    fields = {"entries", "distance", "restarts"}
    assert parse_defense("prune:0.9").adaptive({}, attack_fields=fields) == {"entries": "nonzero"}
    assert parse_defense("noise:0.01").adaptive({"restarts": 1}, attack_fields=fields) == {"distance": "l2", "restarts": 2}


def test_federated_training_gives_each_defense_its_local_step(monkeypatch):
    from gradleak.defenses.federated import FederatedConfig, Splits, federated_training

    model, _ = _digits_model()
    x, y = _digits_batch(8)
    splits = Splits(test=(x, y), attacker=(x, y), clients=[(x, y), (x, y)])
    seen = []
    for spec in ("none", "dpsgd:1"):
        defense = parse_defense(spec)
        monkeypatch.setattr(defense, "train_client", lambda *a, lr, **k: seen.append(lr) or
                            {n: torch.zeros_like(p) for n, p in model.named_parameters()})
        federated_training(model, defense=defense, splits=splits, config=FederatedConfig(rounds=1, lr=0.01),
                           generator=_gen())
    assert seen == [0.01, 0.01, 0.3, 0.3]  # DP-SGD's clipped gradients need the larger step


def test_dpsgd_refuses_batchnorm_before_training(tmp_path, capsys):
    """BatchNorm mixes a batch's samples: per-sample clipping bounds nothing, so DP-SGD says so up front."""
    from gradleak.cli import main

    out = tmp_path / "d"
    code = main(["attack", "--dataset", "digits", "--model", "convnet", "--model-option", "width=4", "--attack", "idlg",
                 "--defense", "dpsgd:1", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "BatchNorm" in err and not out.exists()


def test_audit_leaves_out_budget_defenses_the_model_cannot_take():
    from gradleak.audit.run import usable_defenses
    from gradleak.audit.settings import AuditSettings
    from gradleak.errors import GradleakError
    from gradleak.models import complete_spec
    from gradleak.models.base import ModelSpec

    spec = complete_spec(ModelSpec(name="convnet", input_shape=(1, 8, 8), num_classes=10, options={"width": 4}))
    kept, skipped = usable_defenses(AuditSettings(model="convnet"), spec, ["none", "dpsgd:1", "prune:0.9"])
    assert kept == ["none", "prune:0.9"] and "BatchNorm" in skipped["dpsgd:1"]
    with pytest.raises(GradleakError, match="BatchNorm"):  # named by the user: an error, not a silent skip
        usable_defenses(AuditSettings(model="convnet", defenses=["dpsgd:1"]), spec, ["none", "dpsgd:1"])
