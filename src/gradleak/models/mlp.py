"""A plain multilayer perceptron on the flattened input (images or tabular rows).

Fully connected layers are the easiest case for analytic attacks (with a bias, the first
layer's input is a ratio of gradients), so the MLP is the baseline for "how bad can it be".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .activations import ACTIVATIONS, make_activation
from .catalog import register_model
from .options import opt
from .shapes import flat_size


@dataclass(frozen=True)
class MLPOptions:
    # widths of the hidden layers, in order; () gives a linear (logistic-regression) model
    hidden: tuple[int, ...] = opt((256, 256), "hidden layer widths", minimum=1)
    # nonlinearity after each hidden layer
    activation: str = opt("relu", "activation function", choices=tuple(ACTIVATIONS))
    # bias terms in every linear layer (turning them off defeats the bias-ratio attack)
    bias: bool = opt(True, "use bias terms")
    # factor on PyTorch's default weight init of every layer. At 1 a tanh/sigmoid unit stays in
    # its linear range on [0, 1] images, so every sample of a class sends back nearly the same
    # error signal and a batch's update only reveals class sums; 4 (DLG's LeNet uses a wide
    # uniform init for the same reason) makes the signals sample-specific (docs/cinet.md)
    init_gain: float = opt(1.0, "factor on the default init of every weight matrix", minimum=0.0)


class MLP(nn.Module):
    def __init__(
        self, *, sizes: list[int], num_classes: int, activation: str, bias: bool, init_gain: float = 1.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b, bias=bias), make_activation(activation)]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(sizes[-1], num_classes, bias=bias)
        with torch.no_grad():
            for layer in self.modules():
                if isinstance(layer, nn.Linear):
                    layer.weight.mul_(init_gain)  # x1.0 is exact: the default init is unchanged

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x.flatten(1)))


@register_model("mlp", options_type=MLPOptions, description="Multilayer perceptron on the flattened input")
def build_mlp(*, input_shape: tuple[int, ...], num_classes: int, options: MLPOptions) -> nn.Module:
    sizes = [flat_size("mlp", input_shape, num_classes), *options.hidden]
    return MLP(sizes=sizes, num_classes=num_classes, activation=options.activation, bias=options.bias,
               init_gain=options.init_gain)
