"""The FedAvg attack (Dimitrov et al.): matching of epochs, labels per step, and a tiny end-to-end run."""

from __future__ import annotations

import pytest
import torch
from conftest import make_observation

from gradleak.attacks import create_attack
from gradleak.attacks.fedavg import epoch_slices, match_epochs, step_labels
from gradleak.attacks.objective import GradientMatcher
from gradleak.errors import GradleakError
from gradleak.fl.protocol import Protocol, client_shuffler, local_batches, local_sgd
from gradleak.metrics.image import evaluate_images
from gradleak.scenario import client_shuffle_seed

SHUFFLED = Protocol(name="fedavg", lr=0.1, local_epochs=2, local_batch_size=1, shuffle=True)


def test_permuted_copies_give_the_exact_consensus_and_their_orders():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(5, 1, 4, 4, generator=g)
    labels = torch.tensor([0, 1, 1, 2, 2])
    perms = [torch.arange(5), torch.tensor([0, 2, 1, 4, 3]), torch.tensor([0, 1, 2, 4, 3])]
    epochs = [truth[p] for p in perms]  # label-preserving permutations: slot labels stay fixed
    consensus, orders = match_epochs(epochs, [labels] * len(epochs))
    torch.testing.assert_close(consensus, truth, rtol=0, atol=1e-7)
    for x, order in zip(epochs, orders):
        torch.testing.assert_close(x[order], truth, rtol=0, atol=0)


def test_matching_never_pairs_samples_of_different_labels():
    a = torch.zeros(2, 1, 2, 2)
    b = torch.stack([torch.ones(1, 2, 2), torch.zeros(1, 2, 2)])  # nearest would swap the slots
    _, orders = match_epochs([a, b], [torch.tensor([0, 1])] * 2)
    assert orders[1].tolist() == [0, 1]


def test_step_labels_spread_every_class_over_the_steps():
    slices = [torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7])]
    spread = step_labels(torch.tensor([3, 3, 3, 3, 5, 5, 7, 7]), slices)
    assert sorted(spread.tolist()) == [3, 3, 3, 3, 5, 5, 7, 7]
    for idx in slices:
        assert sorted(spread[idx].tolist()) == [3, 3, 5, 7]


def test_simulation_at_the_truth_in_the_clients_order_reproduces_the_update():
    """What the attack optimises is zero at the truth placed in each epoch's (private) order."""
    obs, truth = make_observation(batch_size=3, protocol=SHUFFLED, share_labels=True, seed=4)
    matcher = GradientMatcher(obs, distance="cosine", dtype=torch.float64)
    private = client_shuffler(SHUFFLED, shuffle_seed=client_shuffle_seed(4))
    order = local_batches(SHUFFLED, num_samples=3, shuffle=private)
    steps = [(truth.inputs[i].double(), truth.labels[i]) for i in order]
    update = local_sgd(matcher.model, None, None, steps, lr=SHUFFLED.lr, create_graph=False)
    assert float(matcher.measure(list(update.values()))) < 1e-9
    assert [len(s) for s in epoch_slices(obs)] == [1, 1, 1]


def test_attack_runs_on_a_shuffled_round_and_beats_random():
    torch.set_num_threads(1)  # tiny double-backward ops: two threads only add contention (conftest resets it)
    obs, truth = make_observation(batch_size=2, protocol=SHUFFLED, share_labels=True)
    rec = create_attack("fedavg", iterations=150, patience=0).run(obs)
    assert rec.inputs.shape == truth.inputs.shape and rec.attack == "fedavg"
    assert sorted(rec.labels.tolist()) == sorted(truth.labels.tolist())
    attacked = evaluate_images(reconstruction=rec.inputs, truth=truth.inputs)["psnr"]
    guessed = evaluate_images(reconstruction=torch.rand_like(truth.inputs), truth=truth.inputs)["psnr"]
    assert attacked > guessed + 3.0


def test_attack_refuses_a_single_gradient_and_bad_weights():
    obs, _ = make_observation()
    with pytest.raises(GradleakError, match="fedavg observation"):
        create_attack("fedavg", iterations=1).run(obs)
    with pytest.raises(GradleakError, match="epoch_weight"):
        create_attack("fedavg", epoch_weight=-1.0)


def test_attackers_judgement_of_a_shuffled_round_searches_the_order():
    """The truth, given in the batch's own order, fits a shuffling client's update once the order search
    has found the client's per-epoch orders (the fixed-order replay alone does not)."""
    from gradleak.attacks.objective import GradientMatcher, update_mismatch

    torch.set_num_threads(1)
    obs, truth = make_observation(batch_size=2, protocol=SHUFFLED, share_labels=True, seed=0)
    fixed = GradientMatcher(obs, distance="cosine", dtype=torch.float64).loss_value(truth.inputs.double(), truth.labels)
    judged = update_mismatch(obs, truth.inputs, truth.labels)
    assert judged < 1e-9 < fixed


def test_cli_records_local_shuffle_and_runs_the_attack(tmp_path):
    import json

    from gradleak.cli import main

    torch.set_num_threads(1)
    obs_dir = tmp_path / "obs"
    assert main(["observe", "--dataset", "digits", "--model", "lenet", "--batch-size", "2", "--protocol", "fedavg",
                 "--local-epochs", "2", "--local-batch-size", "1", "--local-shuffle", "--out", str(obs_dir)]) == 0
    protocol = json.loads((obs_dir / "observation.json").read_text())["protocol"]
    assert protocol["shuffle"] is True and "seed" not in protocol
    out = tmp_path / "run"
    assert main(["attack", "--observation", str(obs_dir), "--ground-truth", str(obs_dir / "ground_truth"),
                 "--attack", "fedavg", "--iterations", "5", "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["attack"] == "fedavg"
