"""Inverting Gradients (Geiping et al. 2020).

Cosine distance between updates (invariant to the update's scale, which a trained model
shrinks) plus total variation as an image prior, minimised by Adam on the *sign* of the
gradient with step decay at 3/8, 5/8 and 7/8 of the run, inside the data box; restarts are
ranked by their final cosine gradient loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..observation import Observation
from .base import register_attack
from .bn_prior import check_bn_options
from .loop import LoopSettings
from .objective import GradientMatcher
from .optimisation import OptimisationAttack, check_common, data_box, stop_rule


@dataclass
class IGConfig:
    iterations: int = 600  # Adam steps per restart (the paper runs 4.8k-24k on GPUs; 600 fits 2 CPU cores)
    restarts: int = 1  # independent random starts; the lowest gradient loss wins
    lr: float = 0.1  # Adam step size (decays x0.1 at 3/8, 5/8, 7/8)
    # Weight of total variation. With signed gradients the two terms compete per pixel, so the
    # useful weight depends on the model's gradient scale: on the 28 px ConvNet the cosine
    # gradient per pixel is ~1e-7 and weights >= 1e-4 let TV override it (PSNR drops by 3-5 dB).
    tv_weight: float = 1e-5
    distance: str = "cosine"  # gradient distance: "cosine" (IG) or "l2"
    entries: str = "all"  # which update entries to match: all, top-layers:K, largest:F, nonzero (vs pruning)
    signed: bool = True  # Adam on signed gradients
    boxed: bool = True  # clamp into the known data range after each step
    step_decay: bool = True  # the paper's multi-step learning-rate decay
    precision: str = "float32"  # compute dtype of the search: "float32" or "float64"
    # A plateau (best loss down by less than tol, relative, over this many steps) moves the run to its next
    # decay stage early; a plateau at the last stage stops it. 0 runs the fixed schedule.
    patience: int = 50
    tol: float = 1e-2  # progress: the best loss fell by more than this fraction within `patience` iterations
    # Several restarts as one vmapped problem where the protocol and model allow (fedsgd, no
    # train-mode BatchNorm, no R_BN): the same starts, schedules and choice, at a fraction of the cost.
    batched_restarts: bool = True
    # R_BN (GradInversion, Yin et al. 2021; gradleak.attacks.bn_prior): weight of the BatchNorm-statistics
    # prior. 0 (default) leaves the attack as published; needs a model with BatchNorm.
    bn_weight: float = 0.0
    bn_stats: str = "auto"  # R_BN targets: running (sent buffers), shared (extracted from returned buffers), auto

    def __post_init__(self) -> None:
        check_common(self)
        check_bn_options(self)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels, for any channel count."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return dx + dy


@register_attack("ig", description="Inverting Gradients: cosine distance + TV, signed Adam, box constraint")
class InvertingGradients(OptimisationAttack):
    Config = IGConfig

    def objective(self, matcher: GradientMatcher, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = matcher(inputs, labels)
        return loss + self.config.tv_weight * total_variation(inputs) if self.config.tv_weight else loss

    def batched_objective(self, matcher: GradientMatcher, labels: torch.Tensor):
        distance, weight = matcher.functional(labels), self.config.tv_weight
        return (lambda x: distance(x) + weight * total_variation(x)) if weight else distance

    def loop_settings(self, observation: Observation) -> LoopSettings:
        cfg = self.config
        return LoopSettings(
            optimizer="adam", iterations=cfg.iterations, lr=cfg.lr, signed=cfg.signed,
            step_decay=cfg.step_decay, box=data_box(observation) if cfg.boxed else None, stop=stop_rule(cfg),
        )


@dataclass
class IGBNConfig(IGConfig):
    # IG's config with R_BN on. 0.1: chosen on the realistic_rounds tuning seed (ConvNet, histology 32 px, batch 8,
    # train mode) by the final gradient loss among {0.1, 1}, for both targets (never by PSNR)
    bn_weight: float = 0.1


@register_attack("ig-bn", description="Inverting Gradients + GradInversion's BatchNorm-statistics prior (R_BN)")
class InvertingGradientsBN(InvertingGradients):
    """IG with R_BN on by default: what an attacker adds when the victim has BatchNorm."""

    Config = IGBNConfig
    attacker_knowledge = ("architecture, weights and protocol of the round; BatchNorm running statistics, and the "
                          "buffers the client returned when it shares them")
