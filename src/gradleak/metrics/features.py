"""Exactness of recovered *feature vectors* (an inner layer's inputs), not of images.

Deep ``spear`` recovers the inputs of a fully connected layer inside the model: the batch's
features there. The evaluator computes the true ones (the model the client received, run on the
true batch exactly as the client ran it) and pairs recovered and true rows one-to-one (Hungarian,
on the exactness test). A row is exact when its relative error is at most 1e-4
(``||f_hat - f|| <= 1e-4 ||f||``: scale-free, since features have no fixed range; the client's
float32 rounding leaves ~1e-7).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

FEATURE_EXACT_RELATIVE = 1e-4  # a recovered feature vector is exact within this relative L2 error


def feature_exact_fraction(recovered: Tensor, truth: Tensor) -> float:
    """Share of the true rows with an exact recovered row, one-to-one (``recovered`` may have fewer rows)."""
    from scipy.optimize import linear_sum_assignment

    if len(recovered) == 0:
        return 0.0
    rec, true = recovered.detach().cpu().double().flatten(1), truth.detach().cpu().double().flatten(1)
    err = torch.cdist(rec, true) / true.norm(dim=1).clamp_min(1e-30)
    exact = err <= FEATURE_EXACT_RELATIVE
    rows, cols = linear_sum_assignment(-exact.double().numpy())
    return float(exact[rows, cols].double().sum()) / true.shape[0]


def feature_metrics(*, recovered: Tensor | None, certified: Tensor | None, truth: Tensor | None,
                    num_samples: int) -> dict[str, Any]:
    """``feature_exact_fraction`` (null without ground truth) and ``feature_certified_fraction``."""
    if recovered is None:
        return {}
    return {
        "feature_exact_fraction": None if truth is None else feature_exact_fraction(recovered, truth),
        "feature_certified_fraction": None if certified is None else float(certified.bool().sum()) / num_samples,
    }
