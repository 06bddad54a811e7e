"""Label recovery from the output layer's update (iDLG for one sample, LLG-style counts)."""

from __future__ import annotations

import pytest
import torch

from gradleak.attacks.labels import _counts_to_labels, posterior_counts, recover_labels
from gradleak.errors import GradleakError
from gradleak.fl.protocol import Protocol, client_update
from gradleak.metrics import label_count_accuracy
from gradleak.models import complete_spec, create_model
from gradleak.models.base import ModelSpec
from gradleak.observation import Observation

from conftest import make_observation


def _recover(obs):
    return recover_labels(obs, model=obs.build_model(), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("model,method", [("lenet", "idlg-bias"), ("cnn6", "idlg-weight")])
def test_single_sample_label_is_exact(model, method):
    for seed in range(5):
        obs, truth = make_observation(model=model, seed=seed)
        est = _recover(obs)
        assert est.method == method
        assert est.labels.tolist() == truth.labels.tolist()


def test_single_sample_label_from_fedavg_delta(fedavg_observation):
    obs, truth = fedavg_observation
    assert _recover(obs).labels.tolist() == truth.labels.tolist()


@pytest.mark.parametrize("dataset,batch", [("digits", 8), ("digits", 32), ("histology", 16)])
def test_batch_label_counts(dataset, batch):
    accuracies = []
    for seed in range(3):
        obs, truth = make_observation(dataset=dataset, batch_size=batch, seed=seed)
        est = _recover(obs)
        assert est.method == "posterior-bias" and len(est.labels) == batch
        accuracies.append(label_count_accuracy(est.labels, truth.labels))
    assert sum(accuracies) / len(accuracies) >= 0.9


def test_shared_labels_are_used_verbatim():
    obs, truth = make_observation(batch_size=4, share_labels=True)
    est = _recover(obs)
    assert est.method == "shared" and torch.equal(est.labels, truth.labels)


def test_counts_rounding_sums_to_batch_and_keeps_negative_classes():
    labels = _counts_to_labels(torch.tensor([2.6, 0.2, -0.3, 1.1]), torch.tensor([True, True, False, False]), 4)
    assert len(labels) == 4
    counts = torch.bincount(labels, minlength=4)
    assert counts[1] >= 1 and counts[0] >= 2 and counts[2] == 0


def test_fedavg_batch_labels():
    obs, truth = make_observation(batch_size=8, protocol=Protocol(name="fedavg", lr=0.05, local_epochs=1))
    assert label_count_accuracy(_recover(obs).labels, truth.labels) >= 0.75


def _observe(model_name, *, num_classes, labels, options=None, zero_classifier=False, seed=0):
    """A fedsgd observation of a random 1x8x8 batch on a freshly built model (no dataset name)."""
    spec = complete_spec(ModelSpec(name=model_name, input_shape=(1, 8, 8), num_classes=num_classes,
                                   options=options or {}))
    torch.manual_seed(seed)
    model = create_model(spec)
    if zero_classifier:  # p_i = softmax(bias) for every input: the batch-mean softmax is known
        torch.nn.init.zeros_(model.fc.weight)
    inputs = torch.rand(len(labels), 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    update = client_update(model, inputs=inputs, labels=labels, protocol=Protocol())
    obs = Observation(model=spec, parameters={k: v.detach().clone() for k, v in model.named_parameters()},
                      buffers={}, train_mode=False, protocol=Protocol(), update=update, num_samples=len(labels))
    return obs, model


def test_counts_are_exact_when_the_mean_softmax_is_known():
    labels = torch.repeat_interleave(torch.arange(5), torch.tensor([30, 0, 17, 9, 8]))
    obs, model = _observe("mlp", num_classes=5, labels=labels, zero_classifier=True)
    public = (torch.rand(40, 1, 8, 8), torch.randint(5, (40,)))
    est = recover_labels(obs, model=model, generator=torch.Generator().manual_seed(0), public=public)
    assert est.method == "posterior-bias"
    assert torch.equal(torch.bincount(est.labels, minlength=5), torch.tensor([30, 0, 17, 9, 8]))


def test_class_conditional_counts_are_exact_when_each_class_has_its_own_softmax():
    # every sample of class k predicts m_k: pbar = M^T n / B depends on the batch's class mix
    m = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.1, 0.1, 0.8]], dtype=torch.float64)
    n = torch.tensor([50.0, 11.0, 3.0], dtype=torch.float64)
    signal = (m.T @ n - n) / 64
    public_labels = torch.arange(3).repeat(10)
    counts = posterior_counts(signal, m[public_labels], torch.ones(30, dtype=torch.float64), public_labels, batch=64)
    assert torch.allclose(counts, n.double(), atol=1e-4)


def test_posterior_beats_llg_on_a_trained_model():
    old, new = [], []
    for seed in range(2):
        obs, truth = make_observation(model="mlp", batch_size=64, trained_steps=200, seed=seed)
        model = obs.build_model()
        for name, out in (("llg", old), ("posterior", new)):
            est = recover_labels(obs, model=model, generator=torch.Generator().manual_seed(0), estimator=name)
            out.append(label_count_accuracy(est.labels, truth.labels))
    assert sum(new) >= sum(old) and sum(new) / 2 >= 0.8


def test_without_public_data_it_falls_back_to_llg_and_says_so():
    obs, model = _observe("mlp", num_classes=4, labels=torch.tensor([0, 1, 1, 3]))
    est = recover_labels(obs, model=model, generator=torch.Generator().manual_seed(0))
    assert est.method.startswith("llg-bias (no public data:") and len(est.labels) == 4


def test_no_bias_head_uses_weight_row_sums():
    labels = torch.repeat_interleave(torch.arange(3), torch.tensor([10, 4, 18]))
    obs, model = _observe("mlp", num_classes=3, labels=labels, options={"bias": False}, zero_classifier=True)
    public = (torch.rand(30, 1, 8, 8), torch.randint(3, (30,)))
    est = recover_labels(obs, model=model, generator=torch.Generator().manual_seed(0), public=public)
    assert est.method == "posterior-weight"
    assert label_count_accuracy(est.labels, labels) >= 0.9


def test_single_logit_head_counts_at_batch_above_one():
    labels = torch.tensor([1] * 20 + [0] * 12)
    obs, model = _observe("mlp", num_classes=1, labels=labels, zero_classifier=True)
    public = (torch.rand(30, 1, 8, 8), torch.randint(2, (30,)))
    est = recover_labels(obs, model=model, generator=torch.Generator().manual_seed(0), public=public)
    assert torch.equal(torch.bincount(est.labels, minlength=2), torch.tensor([12, 20]))
    one, model1 = _observe("mlp", num_classes=1, labels=torch.tensor([1]))
    assert recover_labels(one, model=model1, generator=torch.Generator()).labels.tolist() == [1]


def test_unknown_estimator_is_a_one_line_error():
    obs, truth = make_observation(batch_size=4)
    with pytest.raises(GradleakError, match=r"unknown label estimator 'bayes'; choose one of: posterior, llg") as info:
        recover_labels(obs, model=obs.build_model(), generator=torch.Generator(), estimator="bayes")
    assert "\n" not in str(info.value)


def test_large_batch_rounding_keeps_the_sum_and_is_not_hurt_by_the_presence_rule():
    estimate = torch.tensor([120.4, 0.3, 135.3])
    counts = torch.bincount(_counts_to_labels(estimate, torch.tensor([False, True, False]), 256), minlength=3)
    assert counts.tolist() == [120, 1, 135]
