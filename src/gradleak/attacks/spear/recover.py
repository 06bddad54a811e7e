"""Disaggregate one linear+ReLU layer's update and certify the result (shared by the spear attacks).

The layer's input is the client's data when the layer comes first, else the batch's feature
vectors there; the box a candidate must lie in is the data box for the former, and what the
architecture guarantees for the latter (a preceding ReLU: ``>= 0``; none known: no box).
Nothing here sees the client's data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ...errors import GradleakError
from ...observation import Observation
from ..rgap import observed_gradients
from .certify import Certificate, certify
from .disaggregate import Layer, Outcome, Settings, disaggregate
from .layer import LinearReLU, linear_relu_layers, spear_layer

IMAGE_KINDS = ("image",)


@dataclass
class LayerRecovery:
    """The attacked layer, what the update gave of its inputs, and the attacker's certificate."""

    target: LinearReLU
    layer: Layer
    outcome: Outcome
    certificate: Certificate
    gradients: dict[str, torch.Tensor]  # the update read as gradients, per parameter
    batch: int  # the client's batch size
    notes: list[str] = field(default_factory=list)

    @property
    def inputs(self) -> torch.Tensor:
        """The recovered inputs of the layer, one row per found sample (k x n, float64)."""
        if not self.outcome.components:
            return torch.zeros(0, self.layer.weight.shape[1], dtype=torch.float64)
        return torch.stack([c.x for c in self.outcome.components])

    @property
    def certified(self) -> list[bool]:
        return list(self.certificate.per_sample)

    @property
    def complete(self) -> bool:
        """Every sample found and the batch reproduces the layer's update."""
        return self.certificate.reproduces and len(self.outcome.components) == self.batch


def find_layer(observation: Observation, model: nn.Module, name: str, *, attack: str = "spear") -> LinearReLU:
    """The layer named ``name``, or the shallowest linear+ReLU layer when ``name`` is empty."""
    if not name:
        return spear_layer(model, observation.input_shape, model_name=observation.model.name, attack=attack)
    layers = {layer.name: layer for layer in linear_relu_layers(model, observation.input_shape)}
    if name not in layers:
        raise GradleakError(f"layer {name!r} is not a linear layer followed by a ReLU in model "
                            f"{observation.model.name!r}; choose one of: {', '.join(layers) or '(none)'}")
    return layers[name]


def recover_layer(observation: Observation, *, model: nn.Module, target: LinearReLU, settings: Settings,
                  generator: torch.Generator) -> LayerRecovery:
    """SPEAR on ``target``: the inputs of that layer the update pins down, each certified or not."""
    grads, notes = observed_gradients(observation)
    if target.depth == 0:
        kind = str(observation.data.get("kind", "image"))
        lower = float(observation.data.get("min", 0.0)) if kind in IMAGE_KINDS else None
        upper = float(observation.data.get("max", 1.0)) if kind in IMAGE_KINDS else None
    else:
        lower, upper = target.lower, target.upper
    params = dict(model.named_parameters())
    layer = Layer(
        weight=params[target.weight].detach().double(), bias=params[target.bias].detach().double(),
        grad_weight=grads[target.weight].double(), grad_bias=grads[target.bias].double(), lower=lower, upper=upper,
    )
    b = observation.num_samples
    outcome = disaggregate(layer, batch=b, settings=settings, generator=generator)
    cert = certify(layer, outcome.components, rank=outcome.rank, batch=b, noise=outcome.noise,
                   noise_frobenius=outcome.noise_frobenius, box_slack=settings.box_slack)
    found = len(outcome.components)
    certified = sum(cert.per_sample)
    what = "inputs" if target.depth == 0 else "feature vectors"
    summary = [
        f"layer {target.name} ({layer.weight.shape[0]} units): update rank {outcome.rank} of batch {b}, "
        f"noise floor {outcome.noise:.2e}",
        *outcome.rounds,
        f"SPEAR sub-matrices drawn: {outcome.sampled}",
        f"recovered {found} of {b} {what}, certified {certified}; batch reproduces the layer's gradients: "
        f"{cert.reproduces} (relative residuals {cert.weight_residual:.1e} / {cert.bias_residual:.1e}, "
        f"tolerance {cert.tolerance:.1e})",
        *notes,
    ]
    if outcome.rank < b:
        summary.append(f"the update has rank {outcome.rank} < batch {b}: some samples are indistinguishable here")
    return LayerRecovery(target=target, layer=layer, outcome=outcome, certificate=cert, gradients=grads,
                         notes=summary, batch=b)
