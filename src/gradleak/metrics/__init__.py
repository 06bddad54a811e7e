"""Metrics, computed only after Hungarian assignment of reconstructions to ground truth."""

from __future__ import annotations

from gradleak.metrics.image import (
    LPIPS_UNAVAILABLE,
    PSNR_CAP_DB,
    Scores,
    evaluate_images,
    mse,
    psnr,
    ssim,
    ssim_window,
)
from gradleak.metrics.fsim import fsim
from gradleak.metrics.matching import assign, label_accuracy, label_count_accuracy, pairwise_mse

__all__ = [
    "LPIPS_UNAVAILABLE",
    "PSNR_CAP_DB",
    "Scores",
    "assign",
    "evaluate_images",
    "fsim",
    "label_accuracy",
    "label_count_accuracy",
    "mse",
    "pairwise_mse",
    "psnr",
    "ssim",
    "ssim_window",
]
