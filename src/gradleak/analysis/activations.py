"""Strictly monotone activations, with the inverse and derivative R-GAP needs.

R-GAP recovers a layer's pre-activation ``z = sigma^{-1}(f)`` from its output and the
derivative ``sigma'(z)`` that carries the backward signal; both exist only for strictly
monotone functions. ReLU is not one (a zero output hides its input), so it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import GradleakError

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Invertible:
    """An activation as two functions of the pre-activation and one of the output."""

    name: str
    forward: Fn  # z -> f
    inverse: Fn  # f -> z
    derivative: Fn  # z -> sigma'(z)
    homogeneous: bool = False  # sigma(c z) = c sigma(z) for c > 0 (identity, LeakyReLU): twins are exact multiples


def _leaky(slope: float) -> Invertible:
    if slope <= 0:
        raise GradleakError(f"LeakyReLU with slope {slope} is not invertible (needs a positive slope)")
    return Invertible(
        name=f"leaky_relu({slope:g})",
        forward=lambda z: torch.where(z >= 0, z, slope * z),
        inverse=lambda f: torch.where(f >= 0, f, f / slope),
        derivative=lambda z: torch.where(z >= 0, torch.ones_like(z), torch.full_like(z, slope)),
        homogeneous=True,
    )


def _sigmoid_inverse(f: torch.Tensor) -> torch.Tensor:
    eps = torch.finfo(f.dtype).eps
    return torch.logit(f.clamp(eps, 1 - eps))


def _tanh_inverse(f: torch.Tensor) -> torch.Tensor:
    eps = torch.finfo(f.dtype).eps
    return torch.atanh(f.clamp(-1 + eps, 1 - eps))


IDENTITY = Invertible("identity", forward=lambda z: z, inverse=lambda f: f, derivative=torch.ones_like, homogeneous=True)
SIGMOID = Invertible(
    "sigmoid", forward=torch.sigmoid, inverse=_sigmoid_inverse,
    derivative=lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z)),
)
TANH = Invertible("tanh", forward=torch.tanh, inverse=_tanh_inverse, derivative=lambda z: 1 - torch.tanh(z) ** 2)

#: module type -> factory of its invertible description
INVERTIBLE: dict[type[nn.Module], Callable[[nn.Module], Invertible]] = {
    nn.Identity: lambda m: IDENTITY,
    nn.LeakyReLU: lambda m: _leaky(float(m.negative_slope)),
    nn.Sigmoid: lambda m: SIGMOID,
    nn.Tanh: lambda m: TANH,
}


def is_activation(module: nn.Module) -> bool:
    return type(module) in INVERTIBLE


def invertible(module: nn.Module) -> Invertible:
    return INVERTIBLE[type(module)](module)
