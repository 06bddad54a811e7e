"""Activation functions by name.

Never ``inplace=True``: attacks differentiate the gradient again (double back-propagation)
and run models through ``torch.func.functional_call``; in-place ops can break both.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import UnknownNameError

#: name -> factory of a fresh activation module. leaky_relu uses R-GAP's slope 0.2 (a small
#: slope makes the layer badly conditioned to invert, which is what R-GAP relies on).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": lambda: nn.LeakyReLU(negative_slope=0.2),
    "tanh": nn.Tanh,
}


def make_activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise UnknownNameError(
            f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}"
        ) from None
