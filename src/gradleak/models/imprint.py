"""``imprint``: a victim model with a malicious server's imprint block in front (Fowl et al., ICLR 2022).

"Robbing the Fed" puts a linear layer of ``bins`` rows in front of the victim. Every row
measures the same statistic ``s(x) = m . x`` of the input (a random direction or the mean
brightness); the biases place a ladder of thresholds ``q_0 < q_1 < ... < q_{bins-1}`` so that
row ``i`` fires (ReLU) exactly when ``s(x) > q_i``::

    h_i = relu(gain * (m . x - q_i)),   logits = (net(x) + offset_scale * mean_i(h_i) * e_0) / temperature

The block's output reaches the loss through a parameter-free shift of the first logit, so
``dL/dh_i`` is the same for every row: ``offset_scale / (bins * temperature) * (p_0(x) - [y = 0])``,
never zero while the model is not certain (an input-side shift would give ``sum(dL/dx)``, which
cancels to almost nothing for some samples). A confident model (DLG's LeNet at init puts
p = 1 - 1e-6 on one class) has almost no gradient for the samples it gets right, so the server
also divides the logits by a ``temperature`` it sets from its public data: the predictions
(argmax) are unchanged, the probabilities softened. That is what makes the weight gradients of two
neighbouring rows differ by exactly the samples whose statistic lies between their thresholds
(:mod:`gradleak.attacks.imprint`). Because the shift has no weights, local training cannot make
the rows' gradients drift apart (FedAvg keeps the read-out exact while no sample changes bin).
``offset_scale`` keeps the logit shift small, so the victim trains as usual on the real input.

Built from its options alone the ladder is naive (evenly spaced over [0, 1]); a server
crafts it from its own public data with :func:`gradleak.malicious.craft.craft_imprint`.
The base model is rebuilt from ``base`` and ``base_options`` (a JSON object), so the crafted
model round-trips through ``ModelSpec`` and observations like any other.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import GradleakError
from .catalog import MODELS, register_model
from .options import opt

GAIN = 100.0  # scale of the measurement rows: wide gaps between thresholds in pre-activation units


@dataclass(frozen=True)
class ImprintOptions:
    base: str = opt("lenet", "registry name of the victim model behind the imprint block")
    base_options: str = opt("{}", "the victim model's options as a JSON object, e.g. {\"init\": \"default\"}")
    bins: int = opt(1024, "rows of the imprint layer (thresholds of the measured statistic)", minimum=2)
    offset_scale: float = opt(1e-2, "logits[0] += offset_scale * mean(h): how far the block shifts the first logit")
    temperature: float = opt(1.0, "logits are divided by this (the server softens a confident model)")


def base_options(options: Any, *, model: str = "imprint") -> dict[str, Any]:
    """A wrapper's base-model options, parsed from their JSON text (a JSON object or an error)."""
    try:
        parsed = json.loads(options.base_options)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise GradleakError(f"{model}: base_options must be a JSON object, got {options.base_options!r}")
    return parsed


class ImprintModel(nn.Module):
    """The victim ``net`` behind an imprint block of ``bins`` rows (see the module docstring)."""

    def __init__(self, net: nn.Module, *, input_size: int, bins: int, offset_scale: float,
                 temperature: float = 1.0) -> None:
        super().__init__()
        self.imprint = nn.Linear(input_size, bins)
        self.offset_scale = offset_scale  # architecture constant (an option), not a parameter
        self.temperature = temperature  # architecture constant (an option)
        self.net = net
        with torch.no_grad():  # naive ladder over [0, 1] until a server crafts it from data
            self.imprint.weight.fill_(GAIN / input_size)
            self.imprint.bias.copy_(-GAIN * torch.linspace(0.0, 1.0, bins))

    def offset(self, x: torch.Tensor) -> torch.Tensor:
        """The per-sample shift of the first logit (B), from the rows' ReLU outputs."""
        return self.offset_scale * torch.relu(self.imprint(x.flatten(1))).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        shift = torch.zeros_like(logits)
        shift[:, 0] = self.offset(x)
        return (logits + shift) / self.temperature


@register_model("imprint", options_type=ImprintOptions,
                description="malicious server's crafted model: imprint block (Robbing the Fed) in front of a victim")
def build_imprint(*, input_shape: tuple[int, ...], num_classes: int, options: ImprintOptions) -> nn.Module:
    if options.base == "imprint":
        raise GradleakError("imprint cannot wrap itself")
    for name in ("offset_scale", "temperature"):
        value = getattr(options, name)
        if not (value > 0 and math.isfinite(value)):
            raise GradleakError(f"imprint: {name} must be a positive number, got {value}")
    net = MODELS.get(options.base)(input_shape=input_shape, num_classes=num_classes, **base_options(options))
    return ImprintModel(net, input_size=math.prod(input_shape), bins=options.bins, offset_scale=options.offset_scale,
                        temperature=options.temperature)
