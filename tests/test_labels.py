"""Label recovery from the output layer's update (iDLG for one sample, LLG-style counts)."""

from __future__ import annotations

import pytest
import torch

from gradleak.attacks.labels import _counts_to_labels, recover_labels
from gradleak.fl.protocol import Protocol
from gradleak.metrics import label_count_accuracy

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
        assert est.method == "llg-bias" and len(est.labels) == batch
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
