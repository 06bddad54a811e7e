"""Where in a model SPEAR can attack: a linear layer (with bias) whose output goes into a ReLU.

The execution order of the model's leaf modules is traced once with forward hooks on a zero
input; a ``Linear`` immediately followed by a ``ReLU`` qualifies. Its *depth* says what its
input is: 0 when no parametrised module ran before it (the input is the data, flattened), else
the features the earlier layers computed. For a deeper layer the architecture also says the
range of those features when the last module that shaped them bounds its output (a ReLU:
``>= 0``; a sigmoid: ``[0, 1]``), seen through modules that keep a range (pooling, flatten,
dropout). Functional operations between modules are invisible to the trace; the registered
models have none between a bounding activation and a linear layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ...errors import GradleakError


@dataclass(frozen=True)
class LinearReLU:
    name: str  # module name, e.g. "body.0"
    weight: str  # parameter names in the update
    bias: str
    depth: int  # parametrised modules that run before it (0: its input is the data)
    lower: float | None = None  # its input is >= this by construction (a preceding ReLU: 0); None = unknown
    upper: float | None = None  # its input is <= this by construction (a preceding sigmoid: 1)


Range = tuple[float | None, float | None]

#: how a leaf module maps the known range of its input to that of its output; modules not
#: listed (convolutions, BatchNorm, linear layers...) leave nothing known
RANGES: dict[type[nn.Module], Callable[[Range], Range]] = {
    nn.ReLU: lambda _r: (0.0, None),
    nn.Sigmoid: lambda _r: (0.0, 1.0),
    nn.Tanh: lambda _r: (-1.0, 1.0),
    **{kind: (lambda r: r) for kind in (nn.Flatten, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool2d,
                                         nn.AdaptiveAvgPool2d, nn.Identity, nn.Dropout)},
}


def _leaf_order(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, nn.Module]]:
    order: list[tuple[str, nn.Module]] = []
    handles = [
        m.register_forward_hook(lambda mod, _i, _o, n=n: order.append((n, mod)))
        for n, m in model.named_modules() if len(list(m.children())) == 0
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            p = next(model.parameters())
            model(torch.zeros((2, *input_shape), dtype=p.dtype, device=p.device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return order


def linear_relu_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[LinearReLU]:
    """Every linear layer with a bias that feeds a ReLU, in execution order."""
    order = _leaf_order(model, input_shape)
    found: list[LinearReLU] = []
    depth = 0
    known: Range = (None, None)  # the data's range is the data box, which the attack knows separately
    for i, (name, module) in enumerate(order):
        nxt = order[i + 1][1] if i + 1 < len(order) else None
        if isinstance(module, nn.Linear) and module.bias is not None and type(nxt) is nn.ReLU:
            found.append(LinearReLU(name=name, weight=f"{name}.weight", bias=f"{name}.bias", depth=depth,
                                    lower=known[0] if depth else None, upper=known[1] if depth else None))
        if any(True for _ in module.parameters(recurse=False)):
            depth += 1
        rule = RANGES.get(type(module))
        known = rule(known) if rule is not None else (None, None)
    return found


def spear_layer(model: nn.Module, input_shape: tuple[int, ...], *, model_name: str, attack: str = "spear") -> LinearReLU:
    """The first qualifying layer (the shallowest: its input is closest to the data)."""
    layers = linear_relu_layers(model, input_shape)
    if not layers:
        raise GradleakError(
            f"attack {attack!r} needs a linear layer with bias followed by a ReLU; model {model_name!r} has none "
            "(try model 'mlp', 'lenet' or 'convnet' with option hidden_fc, or another attack)"
        )
    return layers[0]
