"""Restarts as one batched problem: R independent searches in one vectorised step.

Restarts are independent, so R of them can share every forward and double-backward pass:
``torch.func.vmap`` over the restarts of a functional gradient-matching loss computes the R
losses and their input gradients at once (one batched convolution instead of R small ones;
on a LeNet at batch 1 the per-call overhead dominates, so 8 restarts cost little more than
one). Adam is elementwise, so one Adam over the stacked variables is R independent Adams; each
restart keeps its own learning-rate stage and stopping rule (:class:`~.loop.Plateau`), exactly
as :func:`~.loop.optimise` runs it sequentially, and stops on its own.

Where it applies (:func:`batchable`): the fedsgd protocol (one gradient), no BatchNorm in
train mode (batch statistics would be shared across restarts inside vmap), an Adam loop
without annealing. Elsewhere the attack runs its restarts one after another.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..observation import Observation
from .loop import LoopSettings, Plateau

Step = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # X (R, ...) -> (grads (R, ...), losses (R,))
BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which the sequential loop uses


def batchable(observation: Observation, model: nn.Module, settings: LoopSettings) -> bool:
    """Whether R restarts of this search can run as one vmapped problem with the same result."""
    train_bn = observation.train_mode and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return (observation.protocol.name == "fedsgd" and not train_bn and settings.optimizer == "adam"
            and settings.anneal == "none")


def batched_adam(*, step: Step, x: torch.Tensor, settings: LoopSettings,
                 progress: Callable[[int], None] = lambda _n: None) -> list[list[float]]:
    """Minimise R objectives at once; ``x`` (R, ...) is updated in place. One loss trace per restart.

    Per restart the same schedule as the sequential Adam loop: lr x 0.1 at 3/8, 5/8, 7/8 of the
    run (step decay) or earlier on a plateau, a plateau at the last rate stops that restart.
    """
    restarts, n = x.shape[0], settings.iterations
    milestones = [int(n * f) for f in (3 / 8, 5 / 8, 7 / 8)] if settings.step_decay else []
    stage = [0] * restarts
    plateaus = [Plateau(settings.stop) for _ in range(restarts)]
    traces: list[list[float]] = [[] for _ in range(restarts)]
    active = list(range(restarts))
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    b1, b2 = BETAS
    shape = (-1,) + (1,) * (x.dim() - 1)
    if settings.box is not None:
        with torch.no_grad():
            x.clamp_(*settings.box)
    for it in range(n):
        for r in active:
            while stage[r] < len(milestones) and it >= milestones[stage[r]]:
                stage[r] += 1
        index = torch.tensor(active)
        grads, losses = step(x[index].detach())
        g = grads.sign() if settings.signed else grads
        t = it + 1  # every active restart has taken exactly t steps
        with torch.no_grad():
            mi = m[index].lerp_(g, 1 - b1)
            vi = v[index].mul_(b2).addcmul_(g, g, value=1 - b2)
            m[index], v[index] = mi, vi
            lr = torch.tensor([settings.lr * 0.1 ** stage[r] for r in active], dtype=x.dtype).view(shape)
            step_size = lr / (1 - b1 ** t)
            denom = vi.sqrt() / math.sqrt(1 - b2 ** t) + EPS
            xi = x[index] - step_size * mi / denom
            if settings.box is not None:
                xi.clamp_(*settings.box)
            x[index] = xi
        stopped = []
        for r, value in zip(active, losses.tolist()):
            traces[r].append(value)
            if not math.isfinite(value):
                stopped.append(r)
            elif plateaus[r].reached(value):
                if stage[r] < len(milestones):  # decay now instead of stopping
                    stage[r] += 1
                    plateaus[r].reset()
                else:
                    stopped.append(r)
        progress(len(active))
        for r in stopped:
            progress(n - it - 1)
            active.remove(r)
        if not active:
            break
    return traces
