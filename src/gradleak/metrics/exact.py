"""Exact recovery: the share of a batch an attack reproduced to within rounding.

A sample counts as exactly recovered when its matched reconstruction has PSNR >= 60 dB
(mean squared error <= 1e-6 of the squared data range); a record when its feature-space MSE
is <= 1e-6. The attacker's own claim (``certified_fraction``) is reported beside it, so a
reader sees whether the attack knew when it succeeded.
"""

from __future__ import annotations

from collections.abc import Sequence

EXACT_PSNR_DB = 60.0
EXACT_RECORD_MSE = 1e-6


def exact_fraction(*, per_sample_psnr: Sequence[float] | None = None,
                   per_sample_mse: Sequence[float] | None = None) -> float | None:
    """Share of samples recovered exactly (give per-sample PSNR for images, MSE for records)."""
    if per_sample_psnr is not None:
        values = [float(v) >= EXACT_PSNR_DB for v in per_sample_psnr]
    elif per_sample_mse is not None:
        values = [float(v) <= EXACT_RECORD_MSE for v in per_sample_mse]
    else:
        return None
    return sum(values) / len(values) if values else None


def certified_fraction(certified: Sequence[bool] | None) -> float | None:
    """Share of samples the attack itself certified (None for attacks without a certificate)."""
    if certified is None:
        return None
    return sum(bool(c) for c in certified) / len(certified) if len(certified) else None
