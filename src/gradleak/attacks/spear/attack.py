"""``spear``: exact batch recovery through a linear layer followed by a ReLU.

After SPEAR (Dimitrov et al., "Exact Gradient Inversion of Batches in Federated Learning",
NeurIPS 2024), with peeling by single-sample units first (:mod:`.disaggregate`). Where the layer
is the model's first, its inputs are the client's data: exact recovery. Per-sample labels then
follow from the output layer in closed form (:mod:`.labels`). Every sample carries the
attacker's own certificate (:mod:`.certify`); samples the update does not pin down are left at
the middle of the data box and reported as not recovered. Where the layer sits deeper (a CNN's
fully connected head) its inputs are features, not images: ``spear`` hands over to
``spear-ig`` (:mod:`.deep`), which recovers them the same way and inverts them into images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ...errors import GradleakError
from ...observation import Observation
from ..base import Attack, Progress, Reconstruction, register_attack
from ..labels import recover_labels
from .disaggregate import Settings
from .labels import labels_from_inputs
from .layer import LinearReLU
from .recover import IMAGE_KINDS, find_layer, recover_layer


@dataclass
class SPEARConfig:
    trials: int = 32_768  # SPEAR sub-matrices drawn per sampling round, once peeling stalls
    max_sampling_rank: int = 14  # sample only when at most this many remain (expected draws 2^(r-1) H_r <= trials)
    layer: str = ""  # module name of the linear+ReLU layer to attack; "" = the shallowest one
    box_slack: float = 1e-4  # tolerated excursion outside the data box, relative to its width

    def __post_init__(self) -> None:
        if self.trials < 0 or self.max_sampling_rank < 0:
            raise GradleakError(f"trials and max_sampling_rank must be >= 0, got {self.trials}, {self.max_sampling_rank}")
        if not 0 <= self.box_slack < 1:
            raise GradleakError(f"box_slack must be in [0, 1), got {self.box_slack}")


@register_attack("spear", description="SPEAR: exact batch recovery through a linear+ReLU layer (Dimitrov et al. 2024)")
class SPEAR(Attack):
    Config = SPEARConfig

    def total_iterations(self) -> int:
        return 1

    def reconstruct(
        self, observation: Observation, *, generator: torch.Generator, device: torch.device, progress: Progress
    ) -> Reconstruction:
        cfg = self.config
        model = observation.build_model().double()
        target = find_layer(observation, model, cfg.layer)
        if target.depth > 0:
            return self._hand_over(observation, target=target, generator=generator, device=device, progress=progress)
        settings = Settings(trials=cfg.trials, max_sampling_rank=cfg.max_sampling_rank, box_slack=cfg.box_slack)
        recovery = recover_layer(observation, model=model, target=target, settings=settings, generator=generator)
        kind = str(observation.data.get("kind", "image"))
        box = (float(observation.data.get("min", 0.0)), float(observation.data.get("max", 1.0)))
        b, shape = observation.num_samples, observation.input_shape
        inputs = torch.full((b, *shape), (box[0] + box[1]) / 2 if kind in IMAGE_KINDS else 0.0, dtype=torch.float64)
        for i, x in enumerate(recovery.inputs):
            inputs[i] = x.reshape(shape)
        certified = recovery.certified + [False] * (b - len(recovery.outcome.components))
        labels, method = None, ""
        if recovery.complete and observation.labels is None:
            labels = labels_from_inputs(observation, model=model, inputs=inputs, gradients=recovery.gradients)
            method = "spear-head"
        if labels is None:
            estimate = recover_labels(observation, model=observation.build_model(), generator=generator)
            labels, method = estimate.labels, estimate.method
        progress(1)
        cert = recovery.certificate
        notes = recovery.notes
        return Reconstruction(
            inputs=inputs.float(),
            labels=labels.long().cpu(),
            attack=self.name,
            config=dataclasses.asdict(cfg),
            label_method=method,
            loss_trace=[cert.weight_residual],
            restart_losses=[cert.weight_residual],
            restart_traces=[[cert.weight_residual]],
            iterations=1,
            notes=notes,
            certified=torch.tensor(certified, dtype=torch.bool),
        )

    def _hand_over(self, observation: Observation, *, target: LinearReLU, generator: torch.Generator,
                   device: torch.device, progress: Progress) -> Reconstruction:
        """A deeper layer gives features, not images: run ``spear-ig`` (its defaults) on it."""
        from .deep import SpearIG, SpearIGConfig  # late: deep builds on this module's config

        cfg = self.config
        deep = SpearIG(SpearIGConfig(trials=cfg.trials, max_sampling_rank=cfg.max_sampling_rank,
                                     layer=target.name, box_slack=cfg.box_slack))
        result = deep.reconstruct(observation, generator=generator, device=device, progress=progress)
        result.notes.insert(0, f"spear: layer {target.name} is not the model's first; handed over to spear-ig "
                               "(its default settings) to turn the recovered features into images")
        return result
