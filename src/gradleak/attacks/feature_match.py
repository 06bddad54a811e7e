"""Gradient matching plus per-sample feature targets (the feature term of ``spear-ig``).

Where an exact attack recovered the batch's feature vectors at an inner layer (deep
``spear``), each slot of the reconstruction gets one of them as a target: the search minimises
``gradient distance + w * sum_i ||phi(x_i) - f_i||^2 / sum_i ||f_i||^2`` with ``phi`` the model
up to that layer. The recovered features are an unordered set, so slot ``i`` simply takes target
``i``; the gradient term is permutation-invariant and the feature term pins each slot to one
sample, which splits the batch problem into per-sample ones. The features are read from the
same forward pass the gradient term runs (a tap on the layer's input), so BatchNorm in training
mode sees the whole candidate batch, as the client's forward did.
"""

from __future__ import annotations

import torch

from ..models.taps import tap_input
from .objective import GradientMatcher


def feature_distance(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``sum_i ||features_i - targets_i||^2 / sum_i ||targets_i||^2`` over the first ``len(targets)``
    slots: scale-free, 0 at the truth, 1 for all-zero features."""
    k = targets.shape[0]
    return (features[:k] - targets).square().sum() / targets.square().sum().clamp_min(1e-30)


class FeatureMatcher:
    """A :class:`GradientMatcher` whose loss adds the feature term; its :meth:`loss_value` (what
    restarts are ranked by) stays the gradient loss alone, as for every optimisation attack."""

    def __init__(self, matcher: GradientMatcher, *, layer: str, targets: torch.Tensor, weight: float) -> None:
        self.matcher = matcher
        self.layer = layer  # module whose input the targets are
        self.targets = targets.to(matcher.device, matcher.dtype)
        self.weight = weight
        self.model, self.device, self.dtype = matcher.model, matcher.device, matcher.dtype

    def __call__(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not self.weight or len(self.targets) == 0:
            return self.matcher(inputs, labels)
        with tap_input(self.model, self.layer) as tap:
            loss = self.matcher(inputs, labels)
        return loss + self.weight * feature_distance(tap.take(), self.targets)

    def loss_value(self, inputs: torch.Tensor, labels: torch.Tensor) -> float:
        return self.matcher.loss_value(inputs, labels)

    def residual(self, inputs: torch.Tensor, labels: torch.Tensor) -> float:
        """The feature term alone (attacker-computable), for the notes and for tuning ``weight``."""
        if len(self.targets) == 0:
            return 0.0
        with tap_input(self.model, self.layer) as tap:
            self.matcher.update(inputs.detach(), labels, create_graph=False)
        return float(feature_distance(tap.take().detach(), self.targets))
