"""DLG (Zhu et al. 2019) and iDLG (Zhao et al. 2020).

DLG optimises dummy data and soft labels jointly with L-BFGS to minimise the squared L2
distance between the simulated and the observed update. iDLG first reads the label off the
output layer's update (see :mod:`gradleak.attacks.labels`) and then optimises the data only,
which removes DLG's label ambiguity and makes it converge far more reliably.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..observation import Observation
from .base import Progress, register_attack
from .labels import LabelEstimate
from .loop import Candidate, LoopSettings, optimise
from .objective import GradientMatcher
from .optimisation import OptimisationAttack, check_common, data_box, random_inputs, stop_rule


@dataclass
class DLGConfig:
    iterations: int = 300  # L-BFGS steps (DLG's 300)
    lbfgs_inner: int = 20  # function evaluations per L-BFGS step (torch's max_iter)
    lr: float = 1.0  # L-BFGS step size
    restarts: int = 1  # independent random starts; the lowest gradient loss wins
    distance: str = "l2"  # gradient distance: "l2" (DLG) or "cosine"
    entries: str = "all"  # which update entries to match: all, top-layers:K, largest:F, nonzero (vs pruning)
    # Clamp into the data range after each step. Off by default, as in DLG: clamping breaks
    # L-BFGS's curvature pairs and stalled 1 of 5 histology/LeNet seeds at a loss of 0.25.
    boxed: bool = False
    precision: str = "float32"  # compute dtype of the search: "float32" or "float64" (about 2x slower)
    # Stop once the best loss fell by less than tol (relative) over this many L-BFGS steps; 0 runs all.
    # iDLG on histology/LeNet reaches its float32 floor (loss ~3e-7) by step ~76 of 300.
    patience: int = 10
    tol: float = 1e-2  # progress: the best loss fell by more than this fraction within `patience` iterations

    def __post_init__(self) -> None:
        check_common(self)


def _soft_labels(logits: torch.Tensor) -> torch.Tensor:
    """DLG's label variable as probabilities (sigmoid for a single-logit model)."""
    return torch.sigmoid(logits) if logits.shape[-1] == 1 else torch.softmax(logits, dim=-1)


def _hard_labels(logits: torch.Tensor) -> torch.Tensor:
    return (logits[:, 0] > 0).long() if logits.shape[-1] == 1 else logits.argmax(-1)


class _LBFGSAttack(OptimisationAttack):
    """DLG's optimiser: L-BFGS with the DLG config."""

    Config = DLGConfig

    def loop_settings(self, observation: Observation) -> LoopSettings:
        cfg = self.config
        return LoopSettings(
            optimizer="lbfgs", iterations=cfg.iterations, lr=cfg.lr, lbfgs_inner=cfg.lbfgs_inner,
            box=data_box(observation) if cfg.boxed else None, stop=stop_rule(cfg),
        )


@register_attack("dlg", description="Deep Leakage from Gradients: joint data + soft labels, L-BFGS, L2")
class DLG(_LBFGSAttack):
    analytic_labels = False

    def search(
        self, observation: Observation, *, matcher: GradientMatcher, labels: LabelEstimate | None,
        generator: torch.Generator, progress: Progress,
    ) -> Candidate:
        """Data and soft labels optimised jointly (the labels are part of the search)."""
        x = random_inputs(observation, generator=generator, matcher=matcher)
        k = observation.model.num_classes
        y_logits = torch.randn((observation.num_samples, k), generator=generator)
        y_logits = y_logits.to(matcher.device, matcher.dtype).requires_grad_(True)
        trace = optimise(
            objective=lambda: matcher(x, _soft_labels(y_logits)), variables=[x, y_logits], boxed=[x],
            settings=self.loop_settings(observation), progress=progress,
        )
        hard = _hard_labels(y_logits.detach())
        return Candidate(x.detach(), hard, self.score(matcher, x, _soft_labels(y_logits)), trace)


@register_attack("idlg", description="improved DLG: analytic labels, then L-BFGS on the data, L2")
class IDLG(_LBFGSAttack):
    """The frame's data-only search with the label read off the output layer."""
