"""Image metrics (MSE, PSNR, SSIM) on aligned pairs, and the flat result dict.

Functional core: ``mse``/``psnr``/``ssim`` compare ``reconstruction[i]`` with ``truth[i]``
(already assigned) and return per-sample values plus their mean, because the
gradient-inversion papers report the batch mean of per-image scores.
:func:`evaluate_images` does the Hungarian assignment first, then everything else.

Images are B x C x H x W in ``[0, data_range]``. Clamping reconstructions to that range
is the caller's job (metrics do not hide out-of-range values); NaN/Inf are rejected.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from gradleak.errors import GradleakError, ShapeError
from gradleak.metrics.matching import (
    LabelsLike,
    assign,
    label_accuracy,
    label_count_accuracy,
    require_finite,
    require_same_shape,
)

PSNR_CAP_DB = 100.0
"""PSNR ceiling in dB. Identical images have infinite PSNR, which breaks means and JSON;
every per-sample PSNR is capped here (reached when MSE <= data_range**2 * 1e-10)."""

SSIM_MAX_KERNEL = 11
SSIM_SIGMA = 1.5
"""Wang et al. (2004): 11x11 Gaussian window, sigma 1.5 (the skimage/torchmetrics default)."""

LPIPS_UNAVAILABLE = (
    "LPIPS is reported as null: it needs pretrained backbone weights (AlexNet/VGG) that "
    "cannot be downloaded offline; pass lpips_fn=... to evaluate_images if you have them."
)
_lpips_warned = False


class Scores(NamedTuple):
    """Per-sample values (1-D float64 CPU tensor, truth order) and their batch mean."""

    per_sample: Tensor
    mean: float


def _check_images(reconstruction: Tensor, truth: Tensor, data_range: float) -> None:
    require_same_shape(reconstruction, truth)
    if reconstruction.ndim != 4:
        raise ShapeError(
            f"image metrics need B x C x H x W tensors, got reconstruction "
            f"{tuple(reconstruction.shape)} and truth {tuple(truth.shape)}"
        )
    require_finite("reconstruction", reconstruction)
    require_finite("truth", truth)
    if isinstance(data_range, bool) or not (isinstance(data_range, numbers.Real) and 0 < data_range < float("inf")):
        raise GradleakError(f"data_range must be a positive finite number, got {data_range!r}")


def _scores(per_sample: Tensor) -> Scores:
    per_sample = per_sample.detach().double().cpu()
    return Scores(per_sample=per_sample, mean=float(per_sample.mean()))


def mse(reconstruction: Tensor, truth: Tensor, *, data_range: float = 1.0) -> Scores:
    """Per-sample mean squared error. ``data_range`` is only validated (API symmetry)."""
    _check_images(reconstruction, truth, data_range)
    diff = reconstruction.detach().double() - truth.detach().double()
    return _scores((diff**2).flatten(1).mean(dim=1))


def psnr(reconstruction: Tensor, truth: Tensor, *, data_range: float = 1.0) -> Scores:
    """Per-sample PSNR in dB, ``10 log10(data_range^2 / mse)``, capped at ``PSNR_CAP_DB``."""
    per_mse = mse(reconstruction, truth, data_range=data_range).per_sample
    with torch.no_grad():
        db = 10.0 * torch.log10(data_range**2 / per_mse)  # mse == 0 gives +inf, capped below
    return _scores(db.clamp(max=PSNR_CAP_DB))


def ssim_window(height: int, width: int) -> tuple[int, float]:
    """Gaussian window (size, sigma) for SSIM on H x W images.

    Images smaller than 11x11 (8x8 digits) get the largest odd window that fits, with sigma
    scaled by size/11 so the window is the same shape (truncated at 3.5 sigma, as skimage
    does). torchmetrics derives a Gaussian window's size from sigma alone, so shrinking the
    window means shrinking sigma.
    """
    size = min(SSIM_MAX_KERNEL, height, width)
    size -= 1 - size % 2  # largest odd <= size
    if size < 3:
        raise ShapeError(f"SSIM needs images of at least 3x3 pixels, got {height}x{width}")
    return size, SSIM_SIGMA * size / SSIM_MAX_KERNEL


def ssim(reconstruction: Tensor, truth: Tensor, *, data_range: float = 1.0) -> Scores:
    """Per-sample SSIM (Wang et al. 2004): Gaussian window, K1=0.01, K2=0.03.

    The SSIM map is averaged over the valid region only (border of half a window cropped),
    as in the original paper and skimage; channels are averaged for RGB.
    """
    from torchmetrics.functional.image.ssim import structural_similarity_index_measure

    _check_images(reconstruction, truth, data_range)
    size, sigma = ssim_window(reconstruction.shape[-2], reconstruction.shape[-1])
    pad = (size - 1) // 2
    with torch.no_grad():
        _, full = structural_similarity_index_measure(
            reconstruction.detach().double(),
            truth.detach().double(),
            gaussian_kernel=True,
            sigma=sigma,
            data_range=float(data_range),
            reduction="none",
            return_full_image=True,
        )
    valid = full[..., pad : full.shape[-2] - pad, pad : full.shape[-1] - pad]
    return _scores(valid.flatten(1).mean(dim=1))


def _warn_lpips_once() -> None:
    global _lpips_warned
    if not _lpips_warned:
        _lpips_warned = True
        warnings.warn(LPIPS_UNAVAILABLE, RuntimeWarning, stacklevel=3)


def evaluate_images(
    *,
    reconstruction: Tensor,
    truth: Tensor,
    recon_labels: LabelsLike | None = None,
    true_labels: LabelsLike | None = None,
    data_range: float = 1.0,
    lpips_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> dict[str, Any]:
    """Assign reconstructions to truths (Hungarian, on MSE), then score: a flat JSON-able dict.

    Keys: ``mse``, ``psnr``, ``ssim``, ``fsim`` (FSIMc for RGB), ``lpips``, ``label_accuracy``,
    ``label_count_accuracy``, ``psnr_per_sample``, ``ssim_per_sample``, ``fsim_per_sample`` (truth order),
    ``assignment`` (``reconstruction[assignment[i]]`` matched to ``truth[i]``).
    ``lpips`` is None unless ``lpips_fn(aligned_reconstruction, truth)`` (per-sample or
    scalar distances, images in [0, data_range]) is given; label scores are None unless both
    label sets are given.
    """
    perm = assign(reconstruction, truth)
    aligned = reconstruction[perm.to(reconstruction.device)]
    mse_s = mse(aligned, truth, data_range=data_range)
    psnr_s = psnr(aligned, truth, data_range=data_range)
    ssim_s = ssim(aligned, truth, data_range=data_range)
    from gradleak.metrics.fsim import fsim  # lazy: fsim.py builds on this module

    fsim_s = fsim(aligned, truth, data_range=data_range)
    if lpips_fn is None:
        _warn_lpips_once()
        lpips = None
    else:
        with torch.no_grad():
            lpips = float(torch.as_tensor(lpips_fn(aligned, truth)).double().mean())
    have_labels = recon_labels is not None and true_labels is not None
    return {
        "mse": mse_s.mean,
        "psnr": psnr_s.mean,
        "ssim": ssim_s.mean,
        "fsim": fsim_s.mean,
        "lpips": lpips,
        "label_accuracy": label_accuracy(recon_labels, true_labels, perm) if have_labels else None,
        "label_count_accuracy": label_count_accuracy(recon_labels, true_labels) if have_labels else None,
        "psnr_per_sample": psnr_s.per_sample.tolist(),
        "ssim_per_sample": ssim_s.per_sample.tolist(),
        "fsim_per_sample": fsim_s.per_sample.tolist(),
        "assignment": perm.tolist(),
    }
