"""The attacker's own certificate that a recovered sample is exact (no ground truth).

A sample is certified when (1) it lies in the data box, (2) the ReLU pattern it induces is the
zero pattern of its ``dz`` column (every unit it leaves inactive has ``dz = 0``; an active unit
with ``dz`` below the noise floor is tolerated for at most 1 % of the units), and (3) either the recovered batch reproduces
the observed weight and bias gradients to the noise floor (every sample was found: the
factorisation is then pinned down) and the update's rank is the batch size (at a lower rank
some samples share one rank-one term: what reproduces the update is then a mixture of them,
seen on the FC head of an untrained LeNet, where the samples' ReLU patterns coincide). A partial recovery certifies nothing: in
benchmarks/spear_table.py, samples of partial recoveries that looked safe (found by repeated
ratios from a residual of such samples only) were still wrong at 4 of ~350, and a certificate
that is wrong is worse than none. Their exactness is measured, not claimed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .disaggregate import LIVE_FACTOR, NULL_FACTOR, Z_MARGIN, Component, Layer, _in_box

SOFT_SHARE = 0.01  # active units whose dz is below the noise floor: at most this share of the decided ones
REPRODUCE_FACTOR = 1e2  # reproduced: relative residuals below this x the discarded spectrum's share


@dataclass(frozen=True)
class Certificate:
    per_sample: list[bool]
    pattern_ok: list[bool]
    box_ok: list[bool]
    weight_residual: float  # ||dW - sum dz x^T|| / ||dW|| (Frobenius norms)
    bias_residual: float  # ||db - sum dz|| / ||db||
    tolerance: float  # the relative residual the attacker accepts (from the noise floor)
    reproduces: bool


def certify(layer: Layer, components: list[Component], *, rank: int, batch: int, noise: float,
            noise_frobenius: float, box_slack: float) -> Certificate:
    if not components:
        return Certificate([], [], [], 1.0, 1.0, 0.0, False)
    x = torch.stack([c.x for c in components])
    dz = torch.stack([c.dz for c in components], dim=1)
    scale = float(layer.grad_weight.norm())
    tol = NULL_FACTOR * noise
    weight_residual = float((layer.grad_weight - dz @ x).norm()) / scale
    bias_residual = float((layer.grad_bias - dz.sum(1)).norm() / layer.grad_bias.norm().clamp_min(1e-300))
    tolerance = max(REPRODUCE_FACTOR * noise_frobenius / scale, 1e-12)
    reproduces = len(components) == rank and weight_residual <= tolerance and bias_residual <= tolerance
    separable = rank >= batch  # else reproducing the update does not make each component a sample
    z = x @ layer.weight.T + layer.bias
    margin = Z_MARGIN * (x.abs() @ layer.weight.abs().T + layer.bias.abs())
    live = layer.grad_weight.norm(dim=1) > LIVE_FACTOR * tol
    pattern_ok, box_ok, per_sample = [], [], []
    in_box = _in_box(layer.lower, layer.upper, x, box_slack)
    for i, c in enumerate(components):
        decided = live & (z[i].abs() > margin[i])
        zero = c.dz.abs() <= tol
        inactive = z[i] < 0
        # a unit the sample leaves inactive must have dz = 0 (the ReLU); an active unit may have
        # a dz below the noise floor when dL/da is tiny there, but only rarely
        hard = bool((inactive & decided & ~zero).any())
        soft = int((~inactive & decided & zero).sum())
        ok = not hard and soft <= max(1, int(SOFT_SHARE * int(decided.sum())))
        pattern_ok.append(ok)
        box_ok.append(bool(in_box[i]))
        per_sample.append(ok and box_ok[-1] and reproduces and separable)
    return Certificate(per_sample, pattern_ok, box_ok, weight_residual, bias_residual, tolerance, reproduces)
