"""What BatchNorm buffers a client returns reveal about its private batches.

A train-mode BatchNorm layer moves its running statistics towards each batch it sees:

* momentum ``m`` (PyTorch's default 0.1): ``new = (1 - m) * old + m * b``;
* ``momentum=None`` (cumulative average): ``new = old + (b - old) / t`` with ``t`` the updated
  ``num_batches_tracked``;

where ``b`` is the batch's per-channel mean, or its *unbiased* variance (``n / (n - 1)`` times
the one BatchNorm normalises with). A client that returns its buffers with the update (the
``state_dict`` of FedAvg) therefore hands the server ``b`` for every layer: after one local step
the extraction below is exact up to float rounding. After ``K`` local steps the buffers hold one
mixture of the ``K`` batches' statistics, ``new = a * old + sum_k c_k * b_k``; we return
``b_bar = (new - a * old) / sum_k c_k`` and the step weights ``w_k = c_k / sum_k c_k``. That too
is exact, but ``b_bar`` is a weighted average of statistics of *different* mini-batches under
*different* weights (the model moves between steps): an attacker must simulate the steps to use
it (:mod:`gradleak.attacks.bn_prior` does), it is not the statistics of any one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import GradleakError


@dataclass(frozen=True)
class LayerStatistics:
    """Per-channel statistics of one BatchNorm layer's input (variance unbiased, as buffers hold it)."""

    mean: torch.Tensor
    var: torch.Tensor


@dataclass(frozen=True)
class ExtractedStatistics:
    """Batch statistics recovered from returned buffers, per BatchNorm layer (module name)."""

    layers: dict[str, LayerStatistics]
    step_weights: tuple[float, ...]  # w_k: how much local step k contributes to each layer's b_bar
    exact_batch: bool  # True when one local step: b_bar is the batch's own statistics


def batchnorm_layers(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm modules that keep running statistics, by module name."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats}


def step_coefficients(*, momentum: float | None, steps: int, tracked_before: int) -> tuple[float, list[float]]:
    """``(a, [c_1..c_K])`` with ``new = a * old + sum_k c_k * b_k`` after ``steps`` train-mode forwards."""
    if steps < 1:
        raise GradleakError(f"local steps must be >= 1, got {steps}")
    if momentum is None:  # cumulative average over all batches tracked so far
        total = tracked_before + steps
        return tracked_before / total, [1.0 / total] * steps
    if not 0.0 < momentum <= 1.0:
        raise GradleakError(f"BatchNorm momentum must be in (0, 1] or None, got {momentum!r}")
    keep = 1.0 - momentum
    return keep**steps, [momentum * keep ** (steps - k) for k in range(1, steps + 1)]


def extract_batch_statistics(
    model: nn.Module, *, sent: dict[str, torch.Tensor], returned: dict[str, torch.Tensor], steps: int,
) -> ExtractedStatistics:
    """Recover each BatchNorm layer's (step-averaged) batch statistics from sent and returned buffers.

    ``model`` gives the layers and their momenta (the architecture is public); ``sent`` are the
    buffers the server sent, ``returned`` those the client sent back after ``steps`` train-mode
    local steps. Computed in float64 whatever the buffers' dtype, then cast back.
    """
    layers: dict[str, LayerStatistics] = {}
    weights: tuple[float, ...] = ()
    for name, bn in batchnorm_layers(model).items():
        key = f"{name}." if name else ""
        try:
            old_mean, new_mean = sent[f"{key}running_mean"], returned[f"{key}running_mean"]
            old_var, new_var = sent[f"{key}running_var"], returned[f"{key}running_var"]
        except KeyError as exc:
            raise GradleakError(f"BatchNorm layer {name!r}: buffer {exc.args[0]!r} missing from the buffers") from None
        tracked = f"{key}num_batches_tracked"
        before = int(sent[tracked]) if tracked in sent else 0
        if tracked in sent and tracked in returned and int(returned[tracked]) - before != steps:
            raise GradleakError(f"BatchNorm layer {name!r}: the returned buffers count {int(returned[tracked]) - before} "
                                f"local steps but the protocol takes {steps}")
        if bn.momentum is None and tracked not in sent:
            raise GradleakError(f"BatchNorm layer {name!r} has momentum=None but no num_batches_tracked buffer")
        a, c = step_coefficients(momentum=bn.momentum, steps=steps, tracked_before=before)
        scale = sum(c)
        f64 = torch.float64
        mean = (new_mean.to(f64) - a * old_mean.to(f64)) / scale
        var = (new_var.to(f64) - a * old_var.to(f64)) / scale
        layers[name] = LayerStatistics(mean=mean.to(new_mean.dtype), var=var.to(new_var.dtype))
        weights = tuple(ck / scale for ck in c)
    if not layers:
        raise GradleakError("the model has no BatchNorm layer with running statistics: no batch statistics to extract")
    return ExtractedStatistics(layers=layers, step_weights=weights, exact_batch=steps == 1)


def input_statistics(x: torch.Tensor) -> LayerStatistics:
    """Per-channel mean and unbiased variance of a BatchNorm input (N x C x ...), differentiable."""
    dims = [0, *range(2, x.ndim)]
    return LayerStatistics(mean=x.mean(dim=dims), var=x.var(dim=dims, unbiased=True))


def buffers_reveal_batch(*, sent: dict[str, torch.Tensor], returned: dict[str, torch.Tensor] | None) -> bool:
    """Whether returned buffers differ from the sent ones, i.e. carry statistics of the client's data."""
    if returned is None:
        return False
    return any(k.endswith(("running_mean", "running_var")) and not torch.equal(sent[k], returned[k])
               for k in sent if k in returned)
