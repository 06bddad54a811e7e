"""Exact recovery: the share of a client's samples an attack reproduced (up to rounding).

An image counts as exact when its matched reconstruction (each truth used once) has PSNR >= 60 dB
(RMS error <= 0.1 % of the data range); a health record when every entry of its matched row is
within 1e-4 of the truth (max abs error). :func:`exact_matched` pairs reconstructions and truths
by a Hungarian assignment on the exactness test itself (the most one-to-one exact pairs): the
metrics' MSE-sum assignment may hand an exact read-out to another truth when that lowers the
sum (with 256 samples and many mixed read-outs it lost 20 of 65 exact pairs), which would
under-count a closed-form attack. :func:`exact_fraction` applies the test to per-sample scores
of an assignment the caller already made. Closed-form attacks on
crafted models (imprint) or on layers that pin the input down report it; optimisation attacks
rarely reach it. ``certified_fraction`` is the attack's own claim (attacker-computable), to be
read beside the measured ``exact_fraction``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

EXACT_PSNR_DB = 60.0  # images: exact at or above this PSNR (data range 1 -> RMS error <= 1e-3)
EXACT_MAX_ERROR = 1e-4  # records: exact when no entry of the matched row is further off than this


def exact_fraction(*, per_sample_psnr: Sequence[float] | Tensor | None = None,
                   per_sample_max_error: Sequence[float] | Tensor | None = None,
                   psnr_db: float = EXACT_PSNR_DB, max_error: float = EXACT_MAX_ERROR) -> float | None:
    """Share of true samples recovered exactly; give the per-sample PSNR (images) or the per-row
    max abs error (records) of the matched pairs, in truth order. None when neither is given."""
    if per_sample_psnr is not None:
        values = torch.as_tensor(per_sample_psnr, dtype=torch.float64).flatten()
        return float((values >= psnr_db).double().mean()) if values.numel() else None
    if per_sample_max_error is not None:
        values = torch.as_tensor(per_sample_max_error, dtype=torch.float64).flatten()
        return float((values <= max_error).double().mean()) if values.numel() else None
    return None


def exact_matched(reconstruction: Tensor, truth: Tensor, *, data_range: float | None) -> float:
    """Share of truths with an exact reconstruction, one-to-one; ``data_range`` None = records (max abs error)."""
    from scipy.optimize import linear_sum_assignment

    recon = reconstruction.detach().cpu().double().flatten(1)
    true = truth.detach().cpu().double().flatten(1)
    if data_range is None:
        exact = torch.stack([(row - true).abs().max(dim=1).values <= EXACT_MAX_ERROR for row in recon])
    else:
        limit = data_range ** 2 * 10 ** (-EXACT_PSNR_DB / 10)
        exact = torch.stack([((row - true) ** 2).mean(dim=1) <= limit for row in recon])
    rows, cols = linear_sum_assignment(-exact.double().numpy())
    return float(exact[rows, cols].double().sum()) / true.shape[0]


def row_max_error(reconstruction: Tensor, truth: Tensor, assignment: Sequence[int]) -> list[float]:
    """Per true row: the max abs difference to its matched reconstruction ``reconstruction[assignment[i]]``."""
    matched = reconstruction.detach().cpu().double()[torch.as_tensor(list(assignment), dtype=torch.long)]
    return (matched - truth.detach().cpu().double()).abs().flatten(1).max(dim=1).values.tolist()


def certified_fraction(certified: Tensor | None, *, num_samples: int) -> float | None:
    """Share of the ``num_samples`` the attack itself vouches for (None when it makes no claim)."""
    if certified is None or num_samples < 1:
        return None
    return float(certified.bool().sum()) / num_samples
