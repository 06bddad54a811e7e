"""``spear-ig``: SPEAR on a deeper linear+ReLU layer, then a feature-matched image inversion.

Where the linear+ReLU layer is not the model's first (the fully connected head of a CNN), the
same disaggregation recovers, exactly and certified, the batch's *feature vectors* at that
layer, not the images (:mod:`.recover`). Those features leak on their own, and they become
per-sample targets of Inverting Gradients: each slot ``i`` of the reconstruction must match the
update together with feature vector ``i`` (:mod:`..feature_match`). When the whole batch is
recovered, labels come per sample from the output layer (:mod:`.labels`), so slot ``i`` also
gets the label that belongs to its features; otherwise the usual analytic count estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...errors import GradleakError
from ...observation import Observation
from ..base import Progress, Reconstruction, register_attack
from ..feature_match import FeatureMatcher
from ..inverting import IGConfig, InvertingGradients
from ..labels import LabelEstimate, recover_labels
from ..objective import GradientMatcher
from ..optimisation import PRECISIONS
from .attack import SPEARConfig
from .disaggregate import Settings
from .labels import labels_from_inputs
from .recover import find_layer, recover_layer


@dataclass
class SpearIGConfig(IGConfig, SPEARConfig):
    # weight w of the feature term (relative squared error of the slots' features against the
    # recovered ones) next to the cosine gradient loss; 0 = plain IG with spear's labels
    feature_weight: float = 1.0

    def __post_init__(self) -> None:
        IGConfig.__post_init__(self)
        SPEARConfig.__post_init__(self)
        if not (self.feature_weight >= 0 and math.isfinite(self.feature_weight)):
            raise GradleakError(f"feature_weight must be a finite number >= 0, got {self.feature_weight}")


@register_attack("spear-ig", description="SPEAR on a CNN's FC+ReLU head (features, exact), then IG matching them per sample")
class SpearIG(InvertingGradients):
    Config = SpearIGConfig
    attacker_knowledge = "architecture, weights and protocol of the round; batch size"

    def reconstruct(
        self, observation: Observation, *, generator: torch.Generator, device: torch.device, progress: Progress
    ) -> Reconstruction:
        cfg = self.config
        model = observation.build_model().double()
        target = find_layer(observation, model, cfg.layer, attack=self.name)
        if target.depth == 0:
            raise GradleakError(f"layer {target.name!r} of model {observation.model.name!r} reads the data itself: "
                                "use attack 'spear' (exact recovery, no inversion needed)")
        settings = Settings(trials=cfg.trials, max_sampling_rank=cfg.max_sampling_rank, box_slack=cfg.box_slack)
        recovery = recover_layer(observation, model=model, target=target, settings=settings, generator=generator)
        features = recovery.inputs
        # below full rank some samples share a rank-one term: what was found may be mixtures
        targets = features if recovery.outcome.rank >= observation.num_samples else features[:0]
        estimate = None
        if recovery.complete and observation.labels is None:
            labels = labels_from_inputs(observation, model=model, inputs=features, gradients=recovery.gradients,
                                        features_at=target.name)
            estimate = None if labels is None else LabelEstimate(labels=labels.long(), method="spear-head")
        matcher = GradientMatcher(
            observation, distance=cfg.distance, device=device, dtype=PRECISIONS[cfg.precision], entries=cfg.entries,
        )
        if estimate is None:
            estimate = recover_labels(observation, model=matcher.model, generator=generator)
        wrapped = FeatureMatcher(matcher, layer=target.name, targets=targets, weight=cfg.feature_weight)
        result = self.restarts(observation, matcher=wrapped, estimate=estimate, generator=generator, progress=progress)
        residual = wrapped.residual(result.inputs.to(device, matcher.dtype), result.labels.to(device))
        result.notes = [
            f"layer {target.name} reads features, not the data: {len(targets)} of {len(features)} recovered feature "
            f"vectors matched per slot (feature weight {cfg.feature_weight:g}); final feature residual {residual:.3e}",
            *recovery.notes,
        ]
        result.features = features.float()
        result.feature_layer = target.name
        result.feature_certified = torch.tensor(recovery.certified + [False] * (observation.num_samples - len(features)),
                                                dtype=torch.bool)
        return result
