"""The optimisation loop shared by the optimisation attacks (DLG, iDLG, IG, ...).

An attack supplies the variables, an objective over them and a config; the loop runs the
optimiser (Adam with optional signed gradients and step decay, or L-BFGS), keeps the box
constraint, records the loss trace and reports progress. Restarts are run by
:func:`best_of_restarts`, which keeps the restart with the lowest gradient-matching loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import GradleakError
from ..registry import Registry

Objective = Callable[[], torch.Tensor]

# lr factor as a function of the fraction of the run done (Adam only)
ANNEALING: dict[str, Callable[[float], float]] = {
    "none": lambda _f: 1.0,
    "cosine": lambda f: 0.5 * (1.0 + math.cos(math.pi * f)),
    "linear": lambda f: 1.0 - f,
}


@dataclass(frozen=True)
class LoopSettings:
    optimizer: str  # "adam" or "lbfgs"
    iterations: int  # optimiser steps (L-BFGS: outer steps of up to ``lbfgs_inner`` evaluations)
    lr: float
    signed: bool = False  # Adam on the sign of the gradient (IG)
    step_decay: bool = False  # lr x 0.1 at 3/8, 5/8 and 7/8 of the iterations (IG)
    box: tuple[float, float] | None = None  # clamp data variables into this range after each step
    lbfgs_inner: int = 20  # L-BFGS: evaluations per step (torch's max_iter; DLG uses 20)
    anneal: str = "none"  # Adam: lr annealed to 0 over the run, "cosine" or "linear" (tabular attack)

    def __post_init__(self) -> None:
        if self.anneal not in ANNEALING:
            raise GradleakError(f"unknown annealing {self.anneal!r}; choose one of: {', '.join(ANNEALING)}")
        if self.anneal != "none" and self.step_decay:
            raise GradleakError("choose either step_decay or anneal, not both")
        if self.iterations < 1:
            raise GradleakError(f"iterations must be >= 1, got {self.iterations}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise GradleakError(f"lr must be a positive finite number, got {self.lr}")
        LOOPS.get(self.optimizer)


Loop = Callable[..., list[float]]
LOOPS: Registry[Loop] = Registry("optimizer")


def _clamp(boxed: Sequence[torch.Tensor], box: tuple[float, float] | None) -> None:
    if box is not None:
        with torch.no_grad():
            for v in boxed:
                v.clamp_(*box)


@LOOPS.register("adam", description="Adam, optionally on signed gradients with step decay (IG)")
def _adam_loop(
    *, objective: Objective, variables: Sequence[torch.Tensor], boxed: Sequence[torch.Tensor],
    settings: LoopSettings, progress: Callable[[int], None],
) -> list[float]:
    opt = torch.optim.Adam(variables, lr=settings.lr)
    n = settings.iterations
    milestones = [int(n * f) for f in (3 / 8, 5 / 8, 7 / 8)] if settings.step_decay else []
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    if settings.anneal != "none":
        factor = ANNEALING[settings.anneal]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: factor(it / n))
    trace: list[float] = []
    for it in range(n):
        loss = objective()
        grads = torch.autograd.grad(loss, variables)
        for v, g in zip(variables, grads):
            v.grad = g.sign() if settings.signed else g
        opt.step()
        sched.step()
        _clamp(boxed, settings.box)
        value = float(loss.detach())
        trace.append(value)
        progress(1)
        if not math.isfinite(value):
            progress(n - it - 1)
            break
    return trace


@LOOPS.register("lbfgs", description="L-BFGS on the joint variables (DLG)")
def _lbfgs_loop(
    *, objective: Objective, variables: Sequence[torch.Tensor], boxed: Sequence[torch.Tensor],
    settings: LoopSettings, progress: Callable[[int], None],
) -> list[float]:
    opt = torch.optim.LBFGS(variables, lr=settings.lr, max_iter=settings.lbfgs_inner, history_size=100)

    def closure() -> torch.Tensor:
        loss = objective()
        grads = torch.autograd.grad(loss, variables)
        for v, g in zip(variables, grads):
            v.grad = g
        return loss.detach()

    trace: list[float] = []
    for step in range(settings.iterations):
        value = float(opt.step(closure))
        _clamp(boxed, settings.box)
        trace.append(value)
        progress(1)
        if not math.isfinite(value) or value == 0.0:
            progress(settings.iterations - step - 1)
            break
    return trace


def optimise(
    *, objective: Objective, variables: Sequence[torch.Tensor], settings: LoopSettings,
    boxed: Sequence[torch.Tensor] = (), progress: Callable[[int], None] = lambda _n: None,
) -> list[float]:
    """Minimise ``objective`` over ``variables``; returns the loss per iteration."""
    _clamp(boxed, settings.box)
    return LOOPS.get(settings.optimizer)(
        objective=objective, variables=list(variables), boxed=list(boxed), settings=settings, progress=progress
    )


@dataclass
class Candidate:
    """One restart's outcome, scored by a loss the attacker can compute."""

    inputs: torch.Tensor
    labels: torch.Tensor
    loss: float
    trace: list[float]


def best_of_restarts(candidates: Sequence[Candidate]) -> int:
    """Index of the restart with the lowest final gradient loss (NaN counts as worst)."""
    scores = [c.loss if math.isfinite(c.loss) else math.inf for c in candidates]
    return min(range(len(scores)), key=scores.__getitem__)
