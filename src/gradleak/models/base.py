"""The victim-model contract.

Every model is built by a registered factory ``factory(*, input_shape, num_classes, **options)``
returning an ``nn.Module`` whose forward maps ``B x *input_shape`` to ``B x num_classes`` logits.
The ``ModelSpec`` (name + input shape + classes + JSON-able options) is all an observation
needs to rebuild the architecture; the weights travel separately.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """Registry name and constructor arguments of a victim model (JSON round-trippable)."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ModelSpec":
        return cls(
            name=str(d["name"]),
            input_shape=tuple(int(v) for v in d["input_shape"]),
            num_classes=int(d["num_classes"]),
            options=dict(d.get("options", {})),
        )


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of a model: the layer label-recovery attacks read."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise TypeError(f"{type(model).__name__} has no nn.Linear output layer")
    return last


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


