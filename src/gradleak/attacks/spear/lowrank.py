"""Low-rank factorisation of a linear layer's weight gradient, with an attacker-computable rank.

For a linear layer ``Z = X W^T + b`` (batch of ``b`` rows) the weight gradient is
``dL/dW = dZ^T X``, a sum of ``b`` rank-one terms: its rank is at most the batch size. The
singular values beyond the batch size sit at the client's rounding noise (float32: ~1e-8 of the
largest): the attacker knows the batch size (FedAvg weighting reveals it), reads the noise floor
there, and counts as rank the singular values well above it. Every later tolerance is measured
against that floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

SIGNAL = 1e2  # a singular value counts as signal above this x the noise floor (float32 leaves 1e5+)
FLOOR = 1e-13  # singular values below this fraction of the largest are zero (float64 rounding)


@dataclass(frozen=True)
class LowRank:
    """``matrix ~= left @ right`` with ``left = U S`` (m x r) and ``right = V^T`` (r x n)."""

    left: Tensor
    right: Tensor
    singular_values: Tensor  # all of them, descending
    noise: float  # first discarded singular value (the noise floor), 0 when none is discarded

    @property
    def rank(self) -> int:
        return int(self.left.shape[1])


def noise_floor(singular_values: Tensor, *, batch: int) -> float:
    """The client's rounding noise: the first singular value past the batch size (a rank-``b``
    gradient has nothing there but noise), or float64 rounding when the matrix has no more."""
    s = singular_values.double()
    if len(s) == 0:
        return 0.0
    return float(s[batch]) if batch < len(s) else float(s[0]) * 1e-15


def low_rank(matrix: Tensor, *, max_rank: int, noise: float) -> LowRank:
    """Truncated SVD of ``matrix`` (float64): the singular values above ``SIGNAL x noise``,
    at most ``max_rank`` of them."""
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    threshold = max(SIGNAL * noise, float(s[0]) * FLOOR) if len(s) else 0.0
    r = min(max_rank, int((s > threshold).sum()))
    return LowRank(left=u[:, :r] * s[:r], right=vh[:r], singular_values=s,
                   noise=float(s[r]) if r < len(s) else 0.0)
