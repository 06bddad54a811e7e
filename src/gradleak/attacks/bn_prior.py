"""R_BN, the BatchNorm-statistics prior of GradInversion (Yin et al., CVPR 2021).

For every BatchNorm layer ``l`` the candidate batch's input features should have the per-channel
mean and variance the attacker expects: ``R_BN = sum_l ||mu_l(x) - mu_l||_2 + ||var_l(x) - var_l||_2``.
What the attacker expects (``bn_stats``):

* ``running``: the running statistics the server sent (``observation.buffers``): the population
  statistics of earlier rounds' data, a prior on what data looks like (Yin et al.'s setting).
* ``shared``: the client's own batch statistics, extracted from the buffers it returned
  (:mod:`gradleak.fl.bn_stats`): exact after one local step. After ``K`` steps the returned
  buffers mix the steps' statistics with weights ``w_k``; the prior then mixes the candidate's
  per-step statistics (recorded at each simulated local step) with the same weights, which is
  the same mixture, so nothing is approximated beyond the simulation itself.
* ``auto``: ``shared`` when the client returned buffers that moved (train mode), else ``running``.

Variances are unbiased on both sides (running buffers hold unbiased batch variances), so the
attacker never needs the number of positions a layer averages over.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from ..errors import GradleakError
from ..fl.bn_stats import LayerStatistics, batchnorm_layers, buffers_reveal_batch, extract_batch_statistics, input_statistics
from ..observation import Observation
from ..registry import Registry


@dataclass(frozen=True)
class BNTargets:
    """Per-layer statistics the candidate's features should have, and how to mix local steps."""

    layers: dict[str, LayerStatistics]
    step_weights: tuple[float, ...]  # one weight per simulated local step (sums to 1)
    note: str  # what the targets are, for the reconstruction's notes


TargetSource = Callable[[Observation, torch.nn.Module], BNTargets]
BN_SOURCES: Registry[TargetSource] = Registry("BatchNorm statistics source")


def _steps(observation: Observation) -> int:
    return observation.protocol.local_steps(observation.num_samples)


@BN_SOURCES.register("running", description="the running statistics the server sent")
def running_targets(observation: Observation, model: torch.nn.Module) -> BNTargets:
    layers = {}
    for name in batchnorm_layers(model):
        key = f"{name}." if name else ""
        layers[name] = LayerStatistics(mean=observation.buffers[f"{key}running_mean"],
                                       var=observation.buffers[f"{key}running_var"])
    steps = _steps(observation)
    return BNTargets(layers=layers, step_weights=(1.0 / steps,) * steps,
                     note="R_BN targets: the running statistics the server sent")


@BN_SOURCES.register("shared", description="the client's batch statistics, extracted from the buffers it returned")
def shared_targets(observation: Observation, model: torch.nn.Module) -> BNTargets:
    if observation.updated_buffers is None:
        raise GradleakError("bn_stats='shared' needs the buffers the client returned, but this observation has none "
                            "(simulate with --share-buffers); use bn_stats='running' or 'auto'")
    if not observation.train_mode:
        raise GradleakError("bn_stats='shared': the client ran BatchNorm in eval mode, so its returned buffers equal "
                            "the sent ones and reveal no batch statistics; use bn_stats='running' or 'auto'")
    steps = _steps(observation)
    extracted = extract_batch_statistics(model, sent=observation.buffers, returned=observation.updated_buffers,
                                         steps=steps)
    exactness = ("the batch's own statistics (exact: one local step)" if extracted.exact_batch else
                 f"a mixture of {steps} local steps' batch statistics, matched by the same mixture of the "
                 f"candidate's per-step statistics")
    return BNTargets(layers=extracted.layers, step_weights=extracted.step_weights,
                     note=f"R_BN targets: extracted from the returned buffers, {exactness}")


@BN_SOURCES.register("auto", description="shared when the client returned buffers that moved, else running")
def auto_targets(observation: Observation, model: torch.nn.Module) -> BNTargets:
    revealing = observation.train_mode and buffers_reveal_batch(sent=observation.buffers,
                                                                returned=observation.updated_buffers)
    return (shared_targets if revealing else running_targets)(observation, model)


def check_bn_options(cfg: Any) -> None:
    """Validate ``bn_weight`` / ``bn_stats`` of an attack config before any work."""
    weight = cfg.bn_weight
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise GradleakError(f"bn_weight must be a finite number >= 0, got {weight!r}")
    BN_SOURCES.get(cfg.bn_stats)


class BNStatisticsPrior:
    """Forward hooks on the matcher's BatchNorm layers that record the candidate's statistics.

    Only forwards run inside :meth:`recording` are recorded (label recovery and restart scoring
    run the same model and must not count).
    """

    def __init__(self, model: torch.nn.Module, targets: BNTargets, *, dtype: torch.dtype, device: torch.device) -> None:
        layers = batchnorm_layers(model)
        if not layers:
            raise GradleakError("bn_weight > 0 needs a model with BatchNorm layers (running statistics); this one "
                                "has none: set bn_weight=0")
        self.targets = {name: LayerStatistics(mean=t.mean.to(device, dtype), var=t.var.to(device, dtype))
                        for name, t in targets.layers.items()}
        self.weights = targets.step_weights
        self.note = targets.note
        self.seen: dict[str, list[LayerStatistics]] = {name: [] for name in layers}
        self.active = False
        self.handles = [bn.register_forward_hook(self._hook(name)) for name, bn in layers.items()]

    def _hook(self, name: str) -> Callable[..., None]:
        def record(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
            if self.active:
                self.seen[name].append(input_statistics(inputs[0]))
        return record

    @contextmanager
    def recording(self) -> Iterator[None]:
        for forwards in self.seen.values():
            forwards.clear()
        self.active = True
        try:
            yield
        finally:
            self.active = False

    def penalty(self) -> torch.Tensor:
        """Sum over layers of ``||mu - mu*||_2 + ||var - var*||_2`` of the last recorded run."""
        total = None
        for name, forwards in self.seen.items():
            if not forwards:
                continue
            # one forward per simulated local step: mix them as the buffers did; otherwise average
            weights = self.weights if len(forwards) == len(self.weights) else (1.0 / len(forwards),) * len(forwards)
            mean = sum(w * s.mean for w, s in zip(weights, forwards))
            var = sum(w * s.var for w, s in zip(weights, forwards))
            target = self.targets[name]
            term = _norm(mean - target.mean) + _norm(var - target.var)
            total = term if total is None else total + term
        if total is None:
            raise GradleakError("R_BN: no BatchNorm layer ran during the gradient simulation")
        return total

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _norm(v: torch.Tensor) -> torch.Tensor:
    """L2 norm with a finite gradient at 0 (the truth itself, in the exact-statistics case)."""
    return (v.pow(2).sum() + 1e-30).sqrt()


class BNRegularisedMatcher:
    """A gradient matcher whose loss adds ``weight * R_BN``; everything else is the wrapped matcher's.

    ``loss_value`` (restart scoring) stays the plain gradient loss: restarts are ranked by what
    the update says, and the prior is a means to get there.
    """

    def __init__(self, matcher: Any, prior: BNStatisticsPrior, *, weight: float) -> None:
        self.matcher, self.prior, self.weight = matcher, prior, weight

    def __getattr__(self, name: str) -> Any:
        return getattr(self.matcher, name)

    def __call__(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with self.prior.recording():
            loss = self.matcher(inputs, labels)
        return loss + self.weight * self.prior.penalty().to(loss.dtype)


def with_bn_prior(matcher: Any, observation: Observation, *, weight: float, source: str) -> tuple[Any, str | None]:
    """``(matcher, note)``: the matcher wrapped with ``weight * R_BN`` from ``source``; unchanged when weight is 0."""
    if not weight:
        return matcher, None
    targets = BN_SOURCES.get(source)(observation, matcher.model)
    prior = BNStatisticsPrior(matcher.model, targets, dtype=matcher.dtype, device=matcher.device)
    return BNRegularisedMatcher(matcher, prior, weight=weight), f"{targets.note}; weight {weight:g}"
