"""The own-model API (issue #18, item 3): any nn.Module and its update, no registration."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from gradleak import api
from gradleak.errors import GradleakError
from gradleak.fl.protocol import Protocol
from gradleak.models import build_model
from gradleak.models.catalog import MODELS, register_model
from gradleak.scenario import Scenario, simulate

README = Path(__file__).resolve().parents[1] / "README.md"


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.Sigmoid(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def test_gradient_observation_matches_the_simulated_client() -> None:
    observation, truth = simulate(Scenario(dataset="digits", model="lenet", batch_size=3, seed=1))
    model = observation.build_model()
    loss = nn.functional.cross_entropy(model(truth.inputs), truth.labels)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    own = api.observe(model=model, gradients=list(grads), input_shape=observation.input_shape, batch_size=3)
    assert own.protocol.name == "fedsgd" and own.model.num_classes == observation.model.num_classes
    for name, value in observation.update.items():
        torch.testing.assert_close(own.update[name], value)


def test_new_parameters_after_local_sgd_match_the_fedavg_client() -> None:
    protocol = Protocol(name="fedavg", lr=0.05, local_epochs=2)
    observation, truth = simulate(Scenario(dataset="digits", model="lenet", batch_size=2, seed=2, protocol=protocol))
    model = observation.build_model()
    sent = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(truth.inputs), truth.labels).backward()
        opt.step()
    own = api.observe(model=model, new_parameters=dict(model.named_parameters()), parameters=sent, lr=0.05,
                      local_epochs=2, input_shape=observation.input_shape, batch_size=2)
    assert own.protocol == protocol
    for name, value in observation.update.items():
        torch.testing.assert_close(own.update[name], value, rtol=1e-4, atol=1e-6)


def test_wrapped_names_and_modules_are_matched() -> None:
    net = _net()
    wrapper = nn.Module()
    wrapper._module = copy.deepcopy(net)  # what Opacus' GradSampleModule looks like
    grads = {f"_module.{n}": torch.randn_like(p) for n, p in net.named_parameters()}
    own = api.observe(model=wrapper, gradients=grads, input_shape=(1, 8, 8), batch_size=1)
    assert set(own.update) == {n for n, _ in net.named_parameters()}
    assert own.model.num_classes == 3
    rebuilt = own.build_model()  # the registered architecture rebuilds with the sent weights
    torch.testing.assert_close(rebuilt(torch.ones(1, 1, 8, 8)), net(torch.ones(1, 1, 8, 8)))


def test_opacus_step_is_accepted_with_its_defense() -> None:
    opacus = pytest.importorskip("opacus")
    net = _net()
    sent = {n: p.detach().clone() for n, p in net.named_parameters()}
    private = opacus.GradSampleModule(copy.deepcopy(net))
    optimizer = opacus.optimizers.DPOptimizer(torch.optim.SGD(private.parameters(), lr=0.1), noise_multiplier=0.5,
                                              max_grad_norm=1.0, expected_batch_size=2)
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 2])
    nn.functional.cross_entropy(private(x), y).backward()
    optimizer.step()
    own = api.observe(model=private, gradients={n: p.grad for n, p in private.named_parameters()}, parameters=sent,
                      input_shape=(1, 8, 8), batch_size=2, defense="dpsgd:0.5")
    assert own.defense is not None and own.defense["name"] == "dpsgd"
    assert set(own.parameters) == set(sent)
    # the wrapper's hooks stay behind: the attack replays the client on the plain architecture
    reconstruction = api.attack(own, attack="idlg", seed=0, iterations=2)
    assert reconstruction.inputs.shape == (2, 1, 8, 8)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of"),
    ({"gradients": "grads", "weight_delta": "grads"}, "exactly one of"),
    ({"weight_delta": "grads"}, "needs lr"),
    ({"gradients": "missing"}, "missing"),
    ({"gradients": "int"}, "dtype"),
    ({"gradients": "nan"}, "NaN"),
    ({"gradients": "grads", "batch_size": 0}, "batch_size"),
    ({"gradients": "grads", "input_shape": (1, -8, 8)}, "input_shape"),
    ({"gradients": "grads", "data_range": (1.0, 0.0)}, "data_range"),
    ({"gradients": "grads", "defense": "nosuch:1"}, "nosuch"),
    ({"gradients": "short"}, "tensors but the model has"),
])
def test_bad_input_is_one_clear_error(kwargs: dict, message: str) -> None:
    net = _net()
    grads = {n: torch.randn_like(p) for n, p in net.named_parameters()}
    variants = {
        "grads": grads,
        "missing": dict(list(grads.items())[1:]),
        "int": {n: torch.ones_like(p, dtype=torch.int64) for n, p in net.named_parameters()},
        "nan": {n: torch.full_like(p, float("nan")) for n, p in net.named_parameters()},
        "short": list(grads.values())[:2],
    }
    args = {"model": net, "input_shape": (1, 8, 8), "batch_size": 1}
    args.update({k: variants.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()})
    with pytest.raises(GradleakError, match=message):
        api.observe(**args)


def test_register_model_needs_no_options_dataclass() -> None:
    if "tiny-test-net" not in MODELS:
        @register_model("tiny-test-net")
        def build_tiny(*, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
            """A one-layer test net."""
            return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), num_classes))

    model = build_model("tiny-test-net", input_shape=(1, 4, 4), num_classes=2)
    assert model(torch.zeros(1, 1, 4, 4)).shape == (1, 2)
    assert MODELS.describe("tiny-test-net") == "A one-layer test net."
    with pytest.raises(GradleakError, match="no option"):
        build_model("tiny-test-net", input_shape=(1, 4, 4), num_classes=2, width=3)


def test_readme_own_model_snippet_runs_and_leaks() -> None:
    """The README's own-model example, verbatim: it must run and recover the image."""
    text = README.read_text()
    block = re.search(r"<!-- own-model -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README lost its own-model example"
    scope: dict = {}
    exec(compile(block.group(1), "README own-model example", "exec"), scope)
    assert scope["scores"]["label_accuracy"] == 1.0
    assert scope["scores"]["psnr"] > 25.0  # recognisable; 38 dB after 40 steps, more with the full budget
