"""Twin data (R-GAP, Appendix B): a different input with exactly the same gradients.

For the logistic loss ``l = log(1 + e^-mu)`` R-GAP reads ``dl/dmu * mu = -mu / (1 + e^mu)``
off the output layer (Eq. 9/11). For ``mu > 0`` this value is reached at two margins, one on
each side of the peak ``mu* ~ 1.2785`` of ``mu / (1 + e^mu)``. In a bias-free network of
identity/LeakyReLU layers every feature scales with the input (``f(c x) = c f(x)`` for
``c > 0``), so ``x~ = (mu~ / mu) x`` has margin ``mu~`` and, since ``dl/dmu`` then scales by
``mu / mu~``, every layer's gradient ``k_i f_{i-1}^T`` is unchanged: the twin. Two-class
cross-entropy is the same loss on the logit difference, so it has twins too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import GradleakError
from .chain import layer_chain

PEAK = 1.2784645427610738  # argmax of mu / (1 + e^mu): the root of 1 + e^mu - mu e^mu


@dataclass(frozen=True)
class Twin:
    mu: float  # margin of the real input (label's logit minus the other)
    twin_mu: float  # the other margin with the same dl/dmu * mu
    scale: float  # twin_mu / mu: the twin is this multiple of the input
    twin: torch.Tensor  # the twin input, shaped like the real one


def _h(mu: float) -> float:
    """``mu / (1 + e^mu)``, overflow-safe: minus R-GAP's ``dl/dmu * mu``."""
    return mu * math.exp(-mu) / (1.0 + math.exp(-mu)) if mu > 0 else mu / (1.0 + math.exp(mu))


def other_margin(mu: float) -> float:
    """The second ``mu~ != mu`` with ``h(mu~) = h(mu)``; only positive margins have one."""
    if not mu > 0 or not math.isfinite(mu):
        raise GradleakError(f"no twin: margin mu = {mu:.6g} <= 0, where dl/dmu * mu is invertible (Appendix B)")
    target = _h(mu)
    if abs(mu - PEAK) < 1e-12:
        return mu
    lo, hi = (PEAK, max(2 * PEAK, mu)) if mu < PEAK else (0.0, PEAK)
    if mu < PEAK:
        while _h(hi) > target:  # h decreases to 0 beyond the peak
            hi *= 2
    for _ in range(200):  # bisection on the monotone side
        mid = 0.5 * (lo + hi)
        if (_h(mid) > target) == (mu < PEAK):
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def twin_data(model: nn.Module, *, x: torch.Tensor, label: int) -> Twin:
    """The twin of one input ``x`` (shape ``C x H x W`` or flat) with ``label`` under the logistic
    (one output) or two-class cross-entropy loss of a bias-free identity/LeakyReLU network."""
    chain = layer_chain(model, input_shape=tuple(x.shape))
    bad = [layer.name for layer in chain if layer.module.bias is not None or not layer.activation.homogeneous]
    if bad:
        raise GradleakError(f"twin data in closed form needs bias-free identity/LeakyReLU layers; {bad[0]!r} is not")
    outputs = chain[-1].module.out_features
    if outputs > 2:
        raise GradleakError(f"twin data needs the logistic loss (1 output) or 2-class cross-entropy; the model has {outputs} outputs")
    with torch.no_grad():
        logits = model(x.unsqueeze(0)).reshape(-1)
    if outputs == 1:
        mu = float(logits[0]) * (1.0 if label == 1 else -1.0)
    else:
        mu = float(logits[label] - logits[1 - label])
    twin_mu = other_margin(mu)
    scale = twin_mu / mu
    return Twin(mu=mu, twin_mu=twin_mu, scale=scale, twin=x * scale)
