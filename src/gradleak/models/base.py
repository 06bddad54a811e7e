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
    def from_json(cls, d: Any, *, where: str = "model") -> "ModelSpec":
        """Strict: JSON types exactly (a file saying ``"10"`` or ``8.5`` is refused, not coerced)."""
        from ..validation import as_int, as_mapping, as_shape, as_str, check_keys

        d = as_mapping(d, what=where)
        check_keys(d, where=where, required=("name", "input_shape", "num_classes"), optional=("options",))
        return cls(
            name=as_str(d["name"], what=f"{where} name"),
            input_shape=as_shape(d["input_shape"], what=f"{where} input_shape"),
            num_classes=as_int(d["num_classes"], what=f"{where} num_classes", minimum=1),
            options=dict(as_mapping(d.get("options", {}), what=f"{where} options")),
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


