"""``spear``: exact batch recovery through a linear layer followed by a ReLU.

After SPEAR (Dimitrov et al., "Exact Gradient Inversion of Batches in Federated Learning",
NeurIPS 2024), with peeling by single-sample units first (:mod:`.disaggregate`). Where the layer
is the model's first, its inputs are the client's data: exact recovery. Per-sample labels then
follow from the output layer in closed form (:mod:`.labels`). Every sample carries the
attacker's own certificate (:mod:`.certify`); samples the update does not pin down are left at
the middle of the data box and reported as not recovered.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ...errors import GradleakError
from ...observation import Observation
from ..base import Attack, Progress, Reconstruction, register_attack
from ..labels import recover_labels
from ..rgap import observed_gradients
from .certify import certify
from .disaggregate import Layer, Settings, disaggregate
from .labels import labels_from_inputs
from .layer import LinearReLU, linear_relu_layers, spear_layer

IMAGE_KINDS = ("image",)


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


def _target(observation: Observation, model: torch.nn.Module, name: str) -> LinearReLU:
    if not name:
        return spear_layer(model, observation.input_shape, model_name=observation.model.name)
    layers = {layer.name: layer for layer in linear_relu_layers(model, observation.input_shape)}
    if name not in layers:
        raise GradleakError(f"layer {name!r} is not a linear layer followed by a ReLU in model "
                            f"{observation.model.name!r}; choose one of: {', '.join(layers) or '(none)'}")
    return layers[name]


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
        target = _target(observation, model, cfg.layer)
        if target.depth > 0:
            raise GradleakError(
                f"layer {target.name!r} of model {observation.model.name!r} is not the first layer: "
                "spear recovers the data only through a first linear+ReLU layer"
            )
        grads, notes = observed_gradients(observation)
        kind = str(observation.data.get("kind", "image"))
        box = (float(observation.data.get("min", 0.0)), float(observation.data.get("max", 1.0)))
        params = dict(model.named_parameters())
        layer = Layer(
            weight=params[target.weight].detach(), bias=params[target.bias].detach(),
            grad_weight=grads[target.weight].double(), grad_bias=grads[target.bias].double(),
            lower=box[0] if kind in IMAGE_KINDS else None, upper=box[1] if kind in IMAGE_KINDS else None,
        )
        settings = Settings(trials=cfg.trials, max_sampling_rank=cfg.max_sampling_rank, box_slack=cfg.box_slack)
        outcome = disaggregate(layer, batch=observation.num_samples, settings=settings, generator=generator)
        cert = certify(layer, outcome.components, rank=outcome.rank, noise=outcome.noise,
                       noise_frobenius=outcome.noise_frobenius, box_slack=cfg.box_slack)
        b, shape = observation.num_samples, observation.input_shape
        inputs = torch.full((b, *shape), (box[0] + box[1]) / 2 if kind in IMAGE_KINDS else 0.0, dtype=torch.float64)
        for i, c in enumerate(outcome.components):
            inputs[i] = c.x.reshape(shape)
        certified = cert.per_sample + [False] * (b - len(outcome.components))
        labels, method = None, ""
        if cert.reproduces and len(outcome.components) == b and observation.labels is None:
            labels = labels_from_inputs(observation, model=model, inputs=inputs, gradients=grads)
            method = "spear-head"
        if labels is None:
            estimate = recover_labels(observation, model=observation.build_model(), generator=generator)
            labels, method = estimate.labels, estimate.method
        progress(1)
        found = len(outcome.components)
        notes = [
            f"layer {target.name} ({layer.weight.shape[0]} units): update rank {outcome.rank} of batch {b}, "
            f"noise floor {outcome.noise:.2e}",
            *outcome.rounds,
            f"SPEAR sub-matrices drawn: {outcome.sampled}",
            f"recovered {found} of {b}, certified {sum(certified)}; batch reproduces the layer's gradients: "
            f"{cert.reproduces} (relative residuals {cert.weight_residual:.1e} / {cert.bias_residual:.1e}, "
            f"tolerance {cert.tolerance:.1e})",
            *notes,
        ]
        if outcome.rank < b:
            notes.append(f"the update has rank {outcome.rank} < batch {b}: some samples are indistinguishable here")
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
