"""Assign reconstructions to ground-truth samples, and score recovered labels.

Attacks return a batch in arbitrary order, so every metric is computed only after a
one-to-one assignment (Hungarian matching: each truth sample used once). Greedy
nearest-neighbour matching would let one good reconstruction count for several truths.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from gradleak.errors import GradleakError, ShapeError

LabelsLike = Tensor | Sequence[int] | np.ndarray


def require_finite(name: str, tensor: Tensor) -> None:
    """Reject NaN/Inf: a diverged attack must not silently become a number in a table."""
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise GradleakError(
            f"{name} contains {bad} NaN/Inf value(s) (shape {tuple(tensor.shape)}); "
            "metrics need finite values (did the attack diverge?)"
        )


def require_same_shape(reconstruction: Tensor, truth: Tensor) -> None:
    """Both batches must hold the same number of samples of the same shape."""
    if reconstruction.shape != truth.shape:
        raise ShapeError(
            f"reconstruction has shape {tuple(reconstruction.shape)} but truth has shape "
            f"{tuple(truth.shape)}; they must match (batch size and sample shape)"
        )
    if reconstruction.ndim < 1 or reconstruction.shape[0] == 0:
        raise ShapeError(f"need a non-empty batch, got shape {tuple(reconstruction.shape)}")


def pairwise_mse(reconstruction: Tensor, truth: Tensor) -> Tensor:
    """Cost matrix ``cost[i, j]`` = MSE between reconstruction ``i`` and truth ``j`` (float64).

    Computed row by row (exact, memory B x D) rather than via ``|a|^2 + |b|^2 - 2ab``,
    which cancels catastrophically for near-identical images.
    """
    recon = reconstruction.reshape(reconstruction.shape[0], -1).double()
    true = truth.reshape(truth.shape[0], -1).double()
    return torch.stack([((row - true) ** 2).mean(dim=1) for row in recon])


def assign(reconstruction: Tensor, truth: Tensor) -> Tensor:
    """Hungarian assignment: ``reconstruction[perm[i]]`` is matched to ``truth[i]``.

    Minimises the summed per-sample MSE over all one-to-one assignments. Works for any
    sample shape (images or tabular rows). Returns a CPU ``int64`` tensor of length B.
    """
    require_same_shape(reconstruction, truth)
    require_finite("reconstruction", reconstruction)
    require_finite("truth", truth)
    cost = pairwise_mse(reconstruction.detach(), truth.detach()).cpu().numpy()
    from scipy.optimize import linear_sum_assignment  # lazy: keeps scipy out of CLI start-up

    rows, cols = linear_sum_assignment(cost)  # rows: reconstruction, cols: truth
    perm = np.empty(len(cols), dtype=np.int64)
    perm[cols] = rows
    return torch.from_numpy(perm)


def _as_labels(name: str, labels: LabelsLike) -> Tensor:
    """Hard labels as a 1-D int64 CPU tensor; 2-D scores (B x classes) become their argmax."""
    tensor = torch.as_tensor(labels).detach().cpu()
    if tensor.ndim == 2:
        require_finite(name, tensor)
        tensor = tensor.argmax(dim=1)
    if tensor.ndim != 1:
        raise ShapeError(
            f"{name} must be 1-D class indices or 2-D (batch x classes) scores, "
            f"got shape {tuple(tensor.shape)}"
        )
    if tensor.is_floating_point() or tensor.is_complex():
        raise GradleakError(f"{name} must hold integer class indices, got dtype {tensor.dtype}")
    return tensor.long()


def _require_same_length(pred: Tensor, true: Tensor) -> None:
    if pred.shape != true.shape or len(true) == 0:
        raise ShapeError(
            f"predicted labels have shape {tuple(pred.shape)} but true labels have shape "
            f"{tuple(true.shape)}; need the same non-zero batch size"
        )


def label_accuracy(
    pred_labels: LabelsLike, true_labels: LabelsLike, perm: LabelsLike | None = None
) -> float:
    """Fraction of truths whose assigned reconstruction got the right label.

    ``perm`` is the image assignment from :func:`assign` (identity when ``None``), so a
    label counts only if it belongs to the reconstruction matched to that truth.
    """
    pred = _as_labels("pred_labels", pred_labels)
    true = _as_labels("true_labels", true_labels)
    _require_same_length(pred, true)
    if perm is not None:
        order = torch.as_tensor(perm).long().cpu()
        if sorted(order.tolist()) != list(range(len(true))):
            raise ShapeError(f"perm must be a permutation of 0..{len(true) - 1}, got {order.tolist()}")
        pred = pred[order]
    return float((pred == true).double().mean())


def label_count_accuracy(pred: LabelsLike, true: LabelsLike) -> float:
    """Multiset overlap / batch size: order-free score for batch label recovery (iDLG, LLG)."""
    pred_t = _as_labels("pred", pred)
    true_t = _as_labels("true", true)
    _require_same_length(pred_t, true_t)
    overlap = Counter(pred_t.tolist()) & Counter(true_t.tolist())
    return sum(overlap.values()) / len(true_t)
