"""Where in a model SPEAR can attack: a linear layer (with bias) whose output goes into a ReLU.

The execution order of the model's leaf modules is traced once with forward hooks on a zero
input; a ``Linear`` immediately followed by a ``ReLU`` qualifies. Its *depth* says what its
input is: 0 when no parametrised module ran before it (the input is the data, flattened), else
the features the earlier layers computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...errors import GradleakError


@dataclass(frozen=True)
class LinearReLU:
    name: str  # module name, e.g. "body.0"
    weight: str  # parameter names in the update
    bias: str
    depth: int  # parametrised modules that run before it (0: its input is the data)
    after_relu: bool  # its input is a ReLU's output (so it is >= 0)


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
    previous: nn.Module | None = None
    for i, (name, module) in enumerate(order):
        nxt = order[i + 1][1] if i + 1 < len(order) else None
        if isinstance(module, nn.Linear) and module.bias is not None and type(nxt) is nn.ReLU:
            found.append(LinearReLU(name=name, weight=f"{name}.weight", bias=f"{name}.bias", depth=depth,
                                    after_relu=isinstance(previous, nn.ReLU)))
        if any(True for _ in module.parameters(recurse=False)):
            depth += 1
        previous = module
    return found


def spear_layer(model: nn.Module, input_shape: tuple[int, ...], *, model_name: str) -> LinearReLU:
    """The first qualifying layer (the shallowest: its input is closest to the data)."""
    layers = linear_relu_layers(model, input_shape)
    if not layers:
        raise GradleakError(
            f"attack 'spear' needs a linear layer with bias followed by a ReLU; model {model_name!r} has none "
            "(try model 'mlp', or another attack)"
        )
    return layers[0]
