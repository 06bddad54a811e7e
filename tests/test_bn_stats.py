"""BatchNorm statistics in returned buffers: exact extraction, observation I/O, the R_BN prior."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from gradleak.errors import GradleakError, ObservationError
from gradleak.fl.bn_stats import batchnorm_layers, buffers_reveal_batch, extract_batch_statistics, input_statistics
from gradleak.fl.protocol import Protocol, client_round
from gradleak.models import complete_spec, create_model
from gradleak.models.base import ModelSpec
from gradleak.observation import Observation
from gradleak.scenario import Scenario, simulate


def _convnet(momentum: float | None) -> nn.Module:
    torch.manual_seed(0)
    spec = complete_spec(ModelSpec(name="convnet", input_shape=(3, 16, 16), num_classes=4, options={"width": 2}))
    model = create_model(spec).double().train()
    for bn in batchnorm_layers(model).values():
        bn.momentum = momentum
    with torch.no_grad():  # non-trivial sent statistics, so the (1 - m) * old term matters
        for bn in batchnorm_layers(model).values():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.num_batches_tracked.fill_(7)
    return model


def _true_statistics(model: nn.Module, x: torch.Tensor) -> dict[str, object]:
    """Each BatchNorm input's statistics on ``x`` (a plain forward with hooks: the obvious way)."""
    seen: dict[str, object] = {}

    def keep(name: str):
        def hook(_module, inputs, _output) -> None:
            seen[name] = input_statistics(inputs[0])
        return hook

    hooks = [bn.register_forward_hook(keep(name)) for name, bn in batchnorm_layers(model).items()]
    model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_one_step_extraction_is_exact(momentum):
    model = _convnet(momentum)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(5, 3, 16, 16, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0])
    sent = {k: v.detach().clone() for k, v in model.named_buffers()}
    truth = _true_statistics(_convnet(momentum), x)  # the same weights and buffers, untouched
    _, returned = client_round(model, inputs=x, labels=y, protocol=Protocol(name="fedavg", lr=0.1))
    assert all(torch.equal(v, sent[k]) for k, v in model.named_buffers())  # the client's model is left alone
    got = extract_batch_statistics(model, sent=sent, returned=returned, steps=1)
    assert got.exact_batch and got.step_weights == (1.0,)
    assert set(got.layers) == set(truth) and len(truth) == 8
    for name, stats in got.layers.items():
        torch.testing.assert_close(stats.mean, truth[name].mean, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(stats.var, truth[name].var, rtol=1e-9, atol=1e-11)


def test_several_steps_give_the_weighted_mixture():
    """Two local steps on two mini-batches: b_bar = w_1 b_1 + w_2 b_2, under the moved weights."""
    model = _convnet(0.1)
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(4, 3, 16, 16, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    sent = {k: v.detach().clone() for k, v in model.named_buffers()}
    protocol = Protocol(name="fedavg", lr=0.1, local_batch_size=2)
    update, returned = client_round(model, inputs=x, labels=y, protocol=protocol)
    got = extract_batch_statistics(model, sent=sent, returned=returned, steps=2)
    assert not got.exact_batch
    torch.testing.assert_close(torch.tensor(got.step_weights, dtype=torch.float64),
                               torch.tensor([0.9, 1.0], dtype=torch.float64) / 1.9)
    first = _true_statistics(_convnet(0.1), x[:2])
    moved = _convnet(0.1)  # the weights after step 1: sent weights + step-1 change (replay with one step)
    step1, _ = client_round(moved, inputs=x[:2], labels=y[:2], protocol=Protocol(name="fedavg", lr=0.1))
    with torch.no_grad():
        for k, p in moved.named_parameters():
            p.add_(step1[k])
    second = _true_statistics(moved, x[2:])
    for name, stats in got.layers.items():
        w1, w2 = got.step_weights
        torch.testing.assert_close(stats.mean, w1 * first[name].mean + w2 * second[name].mean, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(stats.var, w1 * first[name].var + w2 * second[name].var, rtol=1e-9, atol=1e-11)


def test_step_count_mismatch_is_refused():
    model = _convnet(0.1)
    x, y = torch.rand(2, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1])
    sent = {k: v.detach().clone() for k, v in model.named_buffers()}
    _, returned = client_round(model, inputs=x, labels=y, protocol=Protocol(name="fedavg"))
    with pytest.raises(GradleakError, match="count 1 local steps but the protocol takes 3"):
        extract_batch_statistics(model, sent=sent, returned=returned, steps=3)


def _bn_scenario(**kw) -> Scenario:
    return Scenario(dataset="histology", model="convnet", batch_size=2, image_size=28, train_mode=True,
                    model_options={"width": 2}, protocol=Protocol(name="fedavg", lr=0.01), **kw)


def test_observation_carries_returned_buffers(tmp_path):
    obs, truth = simulate(_bn_scenario(share_buffers=True))
    assert obs.buffers_shared and buffers_reveal_batch(sent=obs.buffers, returned=obs.updated_buffers)
    obs.save(tmp_path)
    loaded = Observation.load(tmp_path)
    assert loaded.buffers_shared
    assert all(torch.equal(loaded.updated_buffers[k], v) for k, v in obs.updated_buffers.items())
    private, _ = simulate(_bn_scenario())
    assert not private.buffers_shared and not buffers_reveal_batch(sent=private.buffers, returned=None)
    private.save(tmp_path / "private")
    assert Observation.load(tmp_path / "private").updated_buffers is None


def test_broken_returned_buffers_are_refused(tmp_path):
    obs, _ = simulate(_bn_scenario(share_buffers=True))
    bad = dict(obs.updated_buffers)
    key = next(k for k in bad if k.endswith("running_var"))
    bad[key] = bad[key].clone()
    bad[key][0] = float("nan")
    with pytest.raises(ObservationError, match="updated_buffers.*NaN"):
        Observation(**{**obs.__dict__, "updated_buffers": bad})
    del bad[key]
    with pytest.raises(GradleakError, match="updated_buffers do not match"):
        Observation(**{**obs.__dict__, "updated_buffers": bad})


# ------------------------------------------------------------------------------------ R_BN prior
from gradleak.attacks import create_attack  # noqa: E402
from gradleak.attacks.bn_prior import with_bn_prior  # noqa: E402
from gradleak.attacks.objective import GradientMatcher  # noqa: E402


@pytest.mark.parametrize("local_batch_size", [None, 1])
def test_shared_prior_vanishes_at_the_truth(local_batch_size):
    """One step, and two steps of one sample each: R_BN(truth) is ~0, R_BN(noise) is not."""
    scenario = _bn_scenario(share_buffers=True)
    scenario.protocol = Protocol(name="fedavg", lr=0.01, local_batch_size=local_batch_size)
    obs, truth = simulate(scenario)
    matcher, note = with_bn_prior(GradientMatcher(obs, distance="cosine", dtype=torch.float64), obs,
                                  weight=1.0, source="auto")
    assert "extracted from the returned buffers" in note
    assert ("exact: one local step" in note) == (local_batch_size is None)

    def penalty(x: torch.Tensor) -> float:
        with matcher.prior.recording():
            matcher.matcher(x.double(), truth.labels)
        return float(matcher.prior.penalty().detach())

    noise = torch.rand(truth.inputs.shape, generator=torch.Generator().manual_seed(3))
    assert penalty(truth.inputs) < 1e-4 * penalty(noise)
    # restart scoring stays the plain gradient loss
    assert matcher.loss_value(truth.inputs.double(), truth.labels) < 1e-6


def test_bn_sources_and_refusals():
    obs, _ = simulate(_bn_scenario())  # train mode, buffers kept private
    assert "running statistics" in with_bn_prior(GradientMatcher(obs), obs, weight=1.0, source="auto")[1]
    with pytest.raises(GradleakError, match="needs the buffers the client returned"):
        with_bn_prior(GradientMatcher(obs), obs, weight=1.0, source="shared")
    evaluated, _ = simulate(replace(_bn_scenario(share_buffers=True), train_mode=False))
    assert "running statistics" in with_bn_prior(GradientMatcher(evaluated), evaluated, weight=1.0, source="auto")[1]
    with pytest.raises(GradleakError, match="eval mode"):
        with_bn_prior(GradientMatcher(evaluated), evaluated, weight=1.0, source="shared")
    with pytest.raises(GradleakError, match="bn_weight.*must be"):
        create_attack("ig", bn_weight=-1.0)
    with pytest.raises(GradleakError, match="unknown BatchNorm statistics source"):
        create_attack("ig", bn_stats="batch")
    lenet, _ = simulate(Scenario(dataset="histology", model="lenet", share_buffers=True))
    with pytest.raises(GradleakError, match="has none: set bn_weight=0"):
        create_attack("ig", iterations=2, bn_weight=1.0).run(lenet)


def test_ig_with_bn_prior_runs_and_says_so():
    obs, _ = simulate(_bn_scenario(share_buffers=True))
    result = create_attack("ig", iterations=3, bn_weight=0.1, bn_stats="shared").run(obs)
    assert result.inputs.shape == (2, 3, 28, 28)
    assert any("R_BN targets: extracted" in n for n in result.notes)
    plain = GradientMatcher(obs, distance="cosine")
    assert result.gradient_loss == pytest.approx(plain.loss_value(result.inputs, result.labels), rel=1e-4)


# ------------------------------------------------------------------------------ audit finding
def test_audit_says_whether_buffers_leak_batch_statistics():
    from gradleak.audit.buffers import buffer_findings, buffer_leak
    from gradleak.audit.verdict import verdict

    shared, _ = simulate(_bn_scenario(share_buffers=True))
    leak = buffer_leak([shared])
    assert leak == {"batchnorm": True, "train_mode": True, "shared": True, "reveals": True, "local_steps": [1]}
    findings, actions = buffer_findings(leak)
    assert "reveal every BatchNorm layer's batch mean and variance exactly" in findings[0]
    assert "Do not send BatchNorm running statistics back" in actions[0]
    v = verdict(curve=[], labels=[], baseline=None, rank={}, defenses=[], dataset="histology", buffers=leak)
    assert findings[0] in v["findings"] and actions[0] in v["actions"]
    kept, _ = simulate(_bn_scenario())
    assert "--share-buffers" in buffer_findings(buffer_leak([kept]))[0][0]
    lenet, _ = simulate(Scenario(dataset="histology", model="lenet", share_buffers=True))
    assert buffer_findings(buffer_leak([lenet])) == ([], [])


def test_cinet_and_gias_take_the_bn_prior(tmp_path):
    from gradleak.priors import GeneratorSpec, build_generator, save_prior

    torch.manual_seed(0)  # an untrained generator: this checks the plumbing, not the prior
    gen = build_generator(GeneratorSpec(arch="dcgan", shape=(3, 28, 28), latent_dim=8, width=8)).eval()
    save_prior(tmp_path / "p", generator=gen, info={"attacker_split": "test"})
    obs, truth = simulate(_bn_scenario(share_buffers=True))
    for name, options in (("cinet", {"width": 8}), ("gias", {"prior": str(tmp_path / "p"), "gias_iterations": 2})):
        rec = create_attack(name, iterations=2, restarts=1, bn_weight=0.1, **options).run(obs)
        assert rec.inputs.shape == truth.inputs.shape and bool(torch.isfinite(rec.inputs).all())
        assert any("R_BN targets: extracted" in n for n in rec.notes), (name, rec.notes)


def test_saved_buffers_flag_must_fit_the_tensors(tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    from gradleak.observation import OBSERVATION_JSON, OBSERVATION_TENSORS

    obs, _ = simulate(_bn_scenario(share_buffers=True))
    obs.save(tmp_path)
    meta = json.loads((tmp_path / OBSERVATION_JSON).read_text())
    (tmp_path / OBSERVATION_JSON).write_text(json.dumps({**meta, "buffers_shared": False}))
    with pytest.raises(ObservationError, match="buffers_shared is false but .* returned/"):
        Observation.load(tmp_path)
    tensors = {k: v for k, v in load_file(tmp_path / OBSERVATION_TENSORS).items() if not k.startswith("returned/")}
    save_file(tensors, tmp_path / OBSERVATION_TENSORS)
    (tmp_path / OBSERVATION_JSON).write_text(json.dumps({**meta, "buffers_shared": True}))
    with pytest.raises(GradleakError, match="updated_buffers do not match"):
        Observation.load(tmp_path)
    (tmp_path / OBSERVATION_JSON).write_text(json.dumps({**meta, "buffers_shared": "yes"}))
    with pytest.raises(ObservationError, match="buffers_shared"):
        Observation.load(tmp_path)


def test_audit_runs_ig_bn_only_on_batchnorm_models():
    from gradleak.audit.battery import Setup, battery
    from gradleak.audit.budget import get_budget

    for model, options, skipped in (("convnet", {"width": 2}, None), ("lenet", {}, "no BatchNorm layer")):
        spec = complete_spec(ModelSpec(name=model, input_shape=(3, 28, 28), num_classes=4, options=options))
        entries = {e.name: e for e in battery(Setup(spec=spec, protocol=Protocol(), data_kind="image", prior=None,
                                                    budget=get_budget("quick")))}
        entry = entries["ig-bn"]
        assert (entry.skipped is None) if skipped is None else (skipped in entry.skipped)
        if skipped is None:
            assert entry.options == entries["ig"].options
