"""The server's side: craft an imprint model from the attacker's own public data.

The thresholds are quantiles of the measured statistic on the public data (never on a
client's batch): with ``bins`` rows each bin holds about ``1 / bins`` of the data, so a sample
is alone in its bin with probability about ``(1 - 1/bins)^(N-1)`` among N samples in all.
The crafting wraps whatever model the server would otherwise have sent (trained or not),
so the victim behind the block keeps its weights.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import GradleakError, ShapeError
from ..models import complete_spec
from ..models.base import ModelSpec
from ..models.imprint import ImprintModel

GAIN = 1e-2  # default row scale (see ImprintCraft.gain)
from ..registry import Registry

Measure = Callable[[int, torch.Generator], torch.Tensor]  # (input size D, generator) -> measurement vector (D)
Crafter = Callable[[ModelSpec, nn.Module], tuple[ModelSpec, nn.Module]]  # what simulate(craft=...) calls

STATISTICS: Registry[Measure] = Registry("imprint statistic")


@STATISTICS.register("mean", description="mean brightness: every input entry weighted 1/D (the paper's default)")
def _mean(size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.full((size,), 1.0 / size)


@STATISTICS.register("random", description="a fixed random direction (seeded), as long as the mean's")
def _random(size: int, generator: torch.Generator) -> torch.Tensor:
    v = torch.randn(size, generator=generator, dtype=torch.float64)
    return (v / (v.norm() * math.sqrt(size))).float()


@dataclass(frozen=True)
class ImprintCraft:
    """How the server builds its imprint block."""

    bins: int = 1024  # rows of the imprint layer: more bins, fewer collisions (and a bigger model)
    statistic: str = "random"  # measured statistic (STATISTICS registry); "random" matched shifted client data better than "mean"
    # scale of the rows. Small rows make the update large relative to the weights, which float32
    # clients need: w_local - w_global loses anything below ~1e-7 of the weight (fedavg)
    gain: float = GAIN
    # median shift of the first logit on public data (sets the model's offset_scale): larger means
    # larger imprint gradients, and a victim that differs more from the real one
    logit_shift: float = 0.5
    seed: int = 0  # seed of a random statistic's direction
    # soften the victim: divide logits so the typical top-2 logit margin on public data is at most this
    # (a confident model gives almost no gradient for the samples it gets right; 0 = keep temperature 1)
    target_margin: float = 2.0

    def __post_init__(self) -> None:
        STATISTICS.get(self.statistic)  # unknown names list the valid ones
        if self.bins < 2:
            raise GradleakError(f"imprint needs at least 2 bins, got {self.bins}")
        for name in ("gain", "logit_shift"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise GradleakError(f"imprint: {name} must be a positive number, got {value}")


def thresholds(values: torch.Tensor, *, bins: int) -> torch.Tensor:
    """``bins`` strictly increasing thresholds at the quantiles ``k / bins`` of ``values`` (float64).

    The lowest sits a whole public range below the public minimum, so client samples darker
    than every public one still fire the first row (they share the first bin).
    """
    values = values.detach().double().flatten()
    if values.numel() < 2 or not bool(torch.isfinite(values).all()):
        raise GradleakError(f"imprint needs at least 2 finite public samples to place its bins, got {values.numel()}")
    q = torch.quantile(values, torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64)[:-1])
    span = float(values.max() - values.min()) or 1.0
    q[0] -= span
    step = span * 1e-9  # ties (duplicate public values) would make two rows identical
    for i in range(1, bins):
        if q[i] <= q[i - 1]:
            q[i] = q[i - 1] + step
    return q


def softening(model: nn.Module, public: torch.Tensor, *, target_margin: float, limit: int = 512) -> float:
    """Temperature (>= 1) that brings the median top-2 logit margin on public data down to ``target_margin``."""
    if target_margin <= 0:
        return 1.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(public[:limit].to(next(model.parameters()).device)).double()
    model.train(was_training)
    if logits.shape[-1] < 2:
        margin = logits.abs().flatten()
    else:
        top = logits.topk(2, dim=1).values
        margin = top[:, 0] - top[:, 1]
    return max(1.0, float(margin.median()) / target_margin)


def craft_imprint(spec: ModelSpec, model: nn.Module, *, public: torch.Tensor,
                  config: ImprintCraft = ImprintCraft()) -> tuple[ModelSpec, ImprintModel]:
    """(spec, model) of the crafted model: ``model`` behind an imprint block tuned on ``public``."""
    if spec.name == "imprint":
        raise GradleakError("the model is already an imprint model")
    if tuple(public.shape[1:]) != tuple(spec.input_shape):
        raise ShapeError(f"public data has samples of shape {tuple(public.shape[1:])} but the model takes "
                         f"{tuple(spec.input_shape)}")
    size = math.prod(spec.input_shape)
    m = STATISTICS.get(config.statistic)(size, torch.Generator().manual_seed(config.seed)).double()
    q = thresholds(public.flatten(1).double() @ m, bins=config.bins)
    temperature = softening(model, public, target_margin=config.target_margin)
    values = public.flatten(1).double() @ m
    mean_h = (config.gain * (values[:, None] - q[None, :])).clamp(min=0).mean(1).median()
    offset_scale = config.logit_shift * temperature / max(float(mean_h), 1e-12)
    crafted = ImprintModel(model, input_size=size, bins=config.bins, offset_scale=offset_scale,
                           temperature=temperature)
    with torch.no_grad():
        crafted.imprint.weight.copy_((config.gain * m).expand(config.bins, size))
        crafted.imprint.bias.copy_(-config.gain * q)
    new_spec = complete_spec(ModelSpec(
        name="imprint", input_shape=tuple(spec.input_shape), num_classes=spec.num_classes,
        options={"base": spec.name, "base_options": json.dumps(spec.options, sort_keys=True), "bins": config.bins,
                 "offset_scale": offset_scale, "temperature": temperature},
    ))
    return new_spec, crafted.to(next(model.parameters()).device)


def imprint_crafter(public: torch.Tensor, config: ImprintCraft = ImprintCraft()) -> Crafter:
    """The crafting step for :func:`gradleak.scenario.simulate` (``craft=``)."""

    def craft(spec: ModelSpec, model: nn.Module) -> tuple[ModelSpec, nn.Module]:
        return craft_imprint(spec, model, public=public, config=config)

    return craft
