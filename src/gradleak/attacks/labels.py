"""Label recovery from the last layer's update, computed from the observation alone.

For cross-entropy, the gradient of the output layer's bias is ``mean_i (p_i - y_i)`` and each
row of its weight gradient is ``mean_i (p_ij - y_ij) h_i``. Hence:

- batch size 1 (iDLG, Zhao et al. 2020): the true class is the only negative bias-gradient
  entry, or (no bias, non-negative features) the only row with a negative sum;
- larger batches (the LLG / bias-based family, Wainakh et al. 2022): class counts are
  ``n_j ~ B (m_j - g_j / s)``, where ``m_j`` is the model's mean predicted probability and
  ``s`` the mean feature sum, both estimated by the attacker on random inputs of its own, and
  ``g_j`` the bias gradient (``s = 1``) or the weight-row sum.

For ``fedavg`` the weight difference is approximately ``-lr * steps * mean gradient``, so its
negation, divided by ``lr * steps``, stands in for the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.base import classifier_layer
from ..observation import Observation


@dataclass(frozen=True)
class LabelEstimate:
    labels: torch.Tensor  # int64, one per sample (order carries no meaning for B > 1)
    method: str  # "shared", "idlg-bias", "idlg-weight", "llg-bias", "llg-weight"


def _classifier_update(observation: Observation, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gradient-like update of the output layer's weight and bias (bias may be absent)."""
    layer = classifier_layer(model)
    names = {id(p): n for n, p in model.named_parameters()}
    weight = observation.update[names[id(layer.weight)]].double()
    bias = observation.update[names[id(layer.bias)]].double() if layer.bias is not None else None
    if observation.protocol.update_kind == "weight_delta":
        scale = -1.0 / (observation.protocol.lr * observation.protocol.local_steps(observation.num_samples))
        weight = weight * scale
        bias = bias * scale if bias is not None else None
    return weight, bias


@torch.no_grad()
def _dummy_statistics(model: nn.Module, input_shape: tuple[int, ...], generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """Mean softmax and mean feature sum of the model on random inputs of the attacker's."""
    layer = classifier_layer(model)
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, inp, _o: captured.append(inp[0]))
    try:
        x = torch.rand((16, *input_shape), generator=generator)
        device = next(model.parameters()).device
        logits = model(x.to(device)).double().cpu()
    finally:
        handle.remove()
    features = captured[0].double().cpu().flatten(1)
    return torch.softmax(logits, dim=-1).mean(0), float(features.sum(1).mean())


def _counts_to_labels(estimate: torch.Tensor, negative: torch.Tensor, batch: int) -> torch.Tensor:
    """Round real-valued class counts to integers summing to ``batch`` (largest remainder).

    Classes whose gradient entry is negative must be present at least once (LLG's rule).
    """
    est = estimate.clamp(min=0)
    counts = torch.zeros_like(est, dtype=torch.long)
    present = negative.nonzero().flatten()
    for j in present[torch.argsort(estimate[present], descending=True)][:batch]:
        counts[j] = 1
    est = (est - counts).clamp(min=0)
    while int(counts.sum()) < batch:
        j = int(torch.argmax(est))
        counts[j] += 1
        est[j] -= 1.0
    return torch.repeat_interleave(torch.arange(len(counts)), counts)


def recover_labels(observation: Observation, *, model: nn.Module, generator: torch.Generator) -> LabelEstimate:
    """Labels for the observed batch, using the labels the client shared when it did."""
    if observation.labels is not None:
        return LabelEstimate(observation.labels.long().clone(), "shared")
    weight, bias = _classifier_update(observation, model)
    batch = observation.num_samples
    if weight.shape[0] == 1:  # single logit: dL/dz = sigmoid(z) - y, negative iff y = 1
        signal = bias if bias is not None else weight.sum(1)
        return LabelEstimate(torch.full((batch,), int(signal.sum() < 0), dtype=torch.long), "logistic-sign")
    signal = bias if bias is not None else weight.sum(1)
    kind = "bias" if bias is not None else "weight"
    if batch == 1:
        return LabelEstimate(torch.argmin(signal).reshape(1).long(), f"idlg-{kind}")
    mean_prob, feature_sum = _dummy_statistics(model, observation.input_shape, generator)
    scale = 1.0 if bias is not None else max(feature_sum, 1e-12)
    estimate = batch * (mean_prob - signal / scale)
    return LabelEstimate(_counts_to_labels(estimate, signal < 0, batch), f"llg-{kind}")
