"""The optimisation loop shared by the optimisation attacks (DLG, iDLG, IG, ...).

An attack supplies the variables, an objective over them and a config; the loop runs the
optimiser (Adam with optional signed gradients and step decay, or L-BFGS), keeps the box
constraint, records the loss trace and reports progress. Restarts are run by
:func:`best_of_restarts`, which keeps the restart with the lowest gradient-matching loss.

A :class:`StopRule` ends a search once the attacker's own objective has stopped improving (the
trace's length says how many iterations were used). Under IG's step decay a plateau first moves
the run to its next, smaller learning rate (as ReduceLROnPlateau does); only a plateau at the last
rate stops it. With ``patience=0`` the loop runs its full, fixed schedule.
"""

from __future__ import annotations

import math
from collections import deque
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
class StopRule:
    """When a search has converged, judged only by the objective the attacker minimises."""

    patience: int = 0  # window of iterations over which progress is judged (0: never stop early)
    tol: float = 1e-2  # progress = the best loss fell by more than this fraction over the window

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise GradleakError(f"patience must be an integer >= 0, got {self.patience!r}")
        if isinstance(self.tol, bool) or not (isinstance(self.tol, (int, float)) and 0.0 <= self.tol < 1.0):
            raise GradleakError(f"tol must be a number in [0, 1), got {self.tol!r}")


class Plateau:
    """Whether the best loss fell by less than ``tol`` (relative) over the last ``patience`` iterations.

    Judged over a window rather than per step, so a slow tail (L-BFGS gaining 0.1 % a step at the
    float32 floor) counts as converged, while steady progress of a few percent per window does not.
    """

    def __init__(self, rule: StopRule) -> None:
        self.rule, self.best = rule, math.inf
        self.window: deque[float] = deque(maxlen=rule.patience + 1)

    def reached(self, value: float) -> bool:
        """Record ``value``; True once a full window passed without enough progress."""
        self.best = min(self.best, value) if math.isfinite(value) else self.best
        self.window.append(self.best)
        if self.rule.patience == 0:
            return False
        if value == 0.0:
            return True
        old = self.window[0]
        return len(self.window) > self.rule.patience and self.best >= old - self.rule.tol * abs(old)

    def reset(self) -> None:
        """Start a new window (after a change of learning rate)."""
        self.window.clear()
        self.window.append(self.best)


@dataclass(frozen=True)
class LoopSettings:
    optimizer: str  # "adam" or "lbfgs"
    iterations: int  # optimiser steps (L-BFGS: outer steps of up to ``lbfgs_inner`` evaluations)
    lr: float
    signed: bool = False  # Adam on the sign of the gradient (IG)
    step_decay: bool = False  # lr x 0.1 at 3/8, 5/8 and 7/8 of the iterations (IG)
    box: tuple[float, float] | None = None  # clamp data variables into this range after each step
    lbfgs_inner: int = 20  # L-BFGS: evaluations per step (torch's max_iter; DLG uses 20)
    # L-BFGS: None takes torch's fixed step `lr` (DLG's); "strong_wolfe" searches the step, which
    # keeps badly scaled problems from diverging (an LSTM's record inversion blew up to 1e150 without)
    line_search: str | None = None
    anneal: str = "none"  # Adam: lr annealed to 0 over the run, "cosine" or "linear" (tabular attack)
    stop: StopRule = StopRule()  # early stop on a plateau of the objective (default: never)

    def __post_init__(self) -> None:
        if self.anneal not in ANNEALING:
            raise GradleakError(f"unknown annealing {self.anneal!r}; choose one of: {', '.join(ANNEALING)}")
        if self.anneal != "none" and self.step_decay:
            raise GradleakError("choose either step_decay or anneal, not both")
        if self.iterations < 1:
            raise GradleakError(f"iterations must be >= 1, got {self.iterations}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise GradleakError(f"lr must be a positive finite number, got {self.lr}")
        if self.line_search not in (None, "strong_wolfe"):
            raise GradleakError(f"unknown line search {self.line_search!r}; choose strong_wolfe or none")
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
    # IG's decay: lr x 0.1 at 3/8, 5/8, 7/8 of the run, or earlier when the loss plateaus first.
    milestones = [int(n * f) for f in (3 / 8, 5 / 8, 7 / 8)] if settings.step_decay else []
    anneal = ANNEALING[settings.anneal]
    plateau = Plateau(settings.stop)
    stage, position, pace = 0, 0.0, 1.0 / n  # position: fraction of the annealing schedule done
    finishing = False  # an annealed run that plateaued: the rest of its schedule in ``patience`` steps
    trace: list[float] = []
    for it in range(n):
        while stage < len(milestones) and it >= milestones[stage]:
            stage += 1
        for group in opt.param_groups:
            group["lr"] = settings.lr * anneal(min(position, 1.0)) * 0.1**stage
        loss = objective()
        grads = torch.autograd.grad(loss, variables)
        for v, g in zip(variables, grads):
            v.grad = g.sign() if settings.signed else g
        opt.step()
        _clamp(boxed, settings.box)
        position += pace
        value = float(loss.detach())
        trace.append(value)
        progress(1)
        if not math.isfinite(value) or (finishing and position >= 1.0 - 1e-9):
            progress(n - it - 1)
            break
        if not finishing and plateau.reached(value):
            if stage < len(milestones):  # not yet at the smallest rate: decay now instead of stopping
                stage += 1
                plateau.reset()
            elif settings.anneal != "none" and value != 0.0:  # anneal the rest quickly, then stop
                finishing, pace = True, (1.0 - position) / settings.stop.patience
            else:
                progress(n - it - 1)
                break
    return trace


@LOOPS.register("lbfgs", description="L-BFGS on the joint variables (DLG)")
def _lbfgs_loop(
    *, objective: Objective, variables: Sequence[torch.Tensor], boxed: Sequence[torch.Tensor],
    settings: LoopSettings, progress: Callable[[int], None],
) -> list[float]:
    # torch's absolute tolerances (grad 1e-7, change 1e-9) end the search early when the update is
    # small (a default-initialised sigmoid CNN: loss 5e-7 at PSNR 27 dB); the StopRule judges instead.
    opt = torch.optim.LBFGS(variables, lr=settings.lr, max_iter=settings.lbfgs_inner, history_size=100,
                            tolerance_grad=0.0, tolerance_change=0.0, line_search_fn=settings.line_search)

    def closure() -> torch.Tensor:
        loss = objective()
        grads = torch.autograd.grad(loss, variables)
        for v, g in zip(variables, grads):
            v.grad = g
        return loss.detach()

    plateau = Plateau(settings.stop)
    trace: list[float] = []
    for step in range(settings.iterations):
        value = float(opt.step(closure))
        _clamp(boxed, settings.box)
        trace.append(value)
        progress(1)
        if not math.isfinite(value) or value == 0.0 or plateau.reached(value):
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
