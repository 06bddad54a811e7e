"""Client protocols: fast paths checked against plain torch training loops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradleak.errors import GradleakError, UnknownNameError
from gradleak.fl.protocol import Protocol, client_update, compute_update
from gradleak.fl.training import pretrain
from gradleak.data import load_dataset
from gradleak.models import build_model


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("lenet", input_shape=(1, 8, 8), num_classes=10)


def _batch(n: int = 4):
    g = torch.Generator().manual_seed(1)
    return torch.rand((n, 1, 8, 8), generator=g), torch.randint(10, (n,), generator=g)


def test_fedsgd_equals_backward():
    model = _model()
    x, y = _batch()
    update = client_update(model, inputs=x, labels=y, protocol=Protocol())
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(update[name], p.grad)


@pytest.mark.parametrize("epochs,local_batch", [(1, None), (2, None), (2, 3)])
def test_fedavg_equals_sgd_loop(epochs, local_batch):
    model = _model()
    x, y = _batch(5)
    protocol = Protocol(name="fedavg", lr=0.05, local_epochs=epochs, local_batch_size=local_batch)
    update = client_update(model, inputs=x, labels=y, protocol=protocol)
    reference = _model()
    before = {k: v.detach().clone() for k, v in reference.named_parameters()}
    opt = torch.optim.SGD(reference.parameters(), lr=0.05)
    size = local_batch or 5
    steps = 0
    for _ in range(epochs):
        for start in range(0, 5, size):
            opt.zero_grad()
            F.cross_entropy(reference(x[start : start + size]), y[start : start + size]).backward()
            opt.step()
            steps += 1
    assert protocol.local_steps(5) == steps
    for name, p in reference.named_parameters():
        torch.testing.assert_close(update[name], p.detach() - before[name], rtol=1e-5, atol=1e-6)


def test_client_update_leaves_batchnorm_buffers_alone():
    torch.manual_seed(0)
    model = build_model("convnet", input_shape=(1, 8, 8), num_classes=3, width=4).train()
    before = {k: v.clone() for k, v in model.named_buffers()}
    client_update(model, inputs=torch.rand(2, 1, 8, 8), labels=torch.tensor([0, 1]), protocol=Protocol())
    for k, v in model.named_buffers():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("protocol", [Protocol(), Protocol(name="fedavg", lr=0.1, local_epochs=2)])
def test_update_is_differentiable_in_inputs(protocol):
    """The attacker's simulation: d(distance)/d(inputs) matches finite differences (float64)."""
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(1, 3, 3), num_classes=3, hidden=[5], activation="sigmoid").double()
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    y = torch.tensor([2, 0])
    target = [t.detach() for t in compute_update(model, params=params, buffers={}, inputs=torch.rand(2, 1, 3, 3, dtype=torch.double), labels=y, protocol=protocol).values()]

    def distance(x: torch.Tensor) -> torch.Tensor:
        upd = compute_update(model, params=params, buffers={}, inputs=x, labels=y, protocol=protocol, create_graph=True)
        return sum(((u - t) ** 2).sum() for u, t in zip(upd.values(), target))

    x = torch.rand(2, 1, 3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(distance, (x,))


def test_protocol_validation():
    with pytest.raises(UnknownNameError, match="fedavg, fedsgd"):
        Protocol(name="fedprox")
    with pytest.raises(GradleakError, match="lr"):
        Protocol(name="fedavg", lr=0.0)
    with pytest.raises(GradleakError, match="local_epochs"):
        Protocol(name="fedavg", local_epochs=0)
    assert Protocol.from_json(Protocol(name="fedavg", lr=0.2, local_batch_size=2).to_json()) == Protocol(
        name="fedavg", lr=0.2, local_batch_size=2
    )


def test_pretrain_lowers_loss_and_is_deterministic():
    data = load_dataset("digits")
    traces = []
    for _ in range(2):
        model = _model()
        traces.append(pretrain(model, data=data, steps=30, generator=torch.Generator().manual_seed(0)))
    assert traces[0] == traces[1]
    assert sum(traces[0][-5:]) < sum(traces[0][:5])


def _shuffled(seed: int, *, shuffle: bool = True):
    model = _model()
    x, y = _batch(6)
    protocol = Protocol(name="fedavg", lr=0.1, local_epochs=2, local_batch_size=2, shuffle=shuffle)
    return client_update(model, inputs=x, labels=y, protocol=protocol, shuffle_seed=seed)


def test_shuffle_changes_the_update_but_is_a_function_of_its_seed():
    plain, same = _shuffled(0, shuffle=False), _shuffled(5, shuffle=False)
    first, again, other = _shuffled(0), _shuffled(0), _shuffled(1)
    assert all(torch.equal(plain[k], same[k]) for k in plain)  # no shuffle: the seed plays no part
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.allclose(first[k], other[k]) for k in first)
    assert not all(torch.allclose(first[k], plain[k]) for k in first)


def test_shuffled_update_equals_sgd_on_the_permuted_batches():
    """The client's steps are those of its private permutations; the attacker's simulation
    (compute_update: no generator) keeps the batch order."""
    from gradleak.fl.protocol import client_shuffler, local_batches

    protocol = Protocol(name="fedavg", lr=0.1, local_epochs=2, local_batch_size=2, shuffle=True)
    x, y = _batch(6)
    steps = local_batches(protocol, num_samples=6, shuffle=client_shuffler(protocol, shuffle_seed=3))
    assert len(steps) == 6 and all(sorted(torch.cat(steps[e * 3:(e + 1) * 3]).tolist()) == list(range(6))
                                   for e in range(2))
    reference = _model()
    before = {k: v.detach().clone() for k, v in reference.named_parameters()}
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    for idx in steps:
        opt.zero_grad()
        F.cross_entropy(reference(x[idx]), y[idx]).backward()
        opt.step()
    update = _shuffled(3)
    for name, p in reference.named_parameters():
        torch.testing.assert_close(update[name], p.detach() - before[name], rtol=1e-5, atol=1e-6)
    attacker = compute_update(_model(), inputs=x, labels=y, protocol=protocol)
    fixed = compute_update(_model(), inputs=x, labels=y, protocol=Protocol(name="fedavg", lr=0.1, local_epochs=2,
                                                                             local_batch_size=2))
    assert all(torch.allclose(attacker[k], fixed[k]) for k in fixed)


def test_protocol_shuffle_validation_and_json():
    with pytest.raises(GradleakError, match="shuffle"):
        Protocol(name="fedavg", shuffle="yes")
    with pytest.raises(GradleakError, match="shuffle"):
        Protocol.from_json({"name": "fedavg", "shuffle": 1})
    assert Protocol().to_json()["shuffle"] is False
    shuffled = Protocol(name="fedavg", lr=0.2, local_epochs=2, shuffle=True)
    assert Protocol.from_json(shuffled.to_json()) == shuffled
    assert Protocol.from_json({"name": "fedavg"}).shuffle is False  # observations saved before the field
