"""``latent-perturb``: a victim model with a learnable perturbation of its latent code.

The seed defense ("Defending Against Gradient Inversion Attacks for Biomedical Images via
Learnable Data Perturbation") splits the classifier into an encoder (everything before the
output layer), a learnable latent perturbation and a predictor (the output layer):

    z = encoder(x),   z' = z + softplus(rho) * eps  (eps ~ N(0, I)),   logits = predictor(z')

The perturbation scale ``softplus(rho)`` (one per latent dimension) is a shared, trained
parameter. The noise is drawn only while ``sampling`` is on (the client's training and the
update it shares); a model rebuilt from an observation has it off, which is the attacker's best
deterministic guess (the noise mean). The proxy-attacker decoder lives in
:mod:`gradleak.defenses.perturbation` and is never shared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GradleakError
from .base import classifier_layer
from .catalog import MODELS, register_model
from .options import opt


@dataclass(frozen=True)
class LatentPerturbOptions:
    base: str = opt("lenet", "registry name of the classifier split into encoder + predictor")
    base_options: str = opt("{}", "the base model's options as a JSON object, e.g. {\"width\": 16}")
    # Initial noise scale in latent units. LeNet's latent code is a sigmoid output in (0, 1),
    # so 0.5 starts with noise comparable to the code; training moves it.
    init_scale: float = opt(0.5, "initial latent noise scale softplus(rho)")


class LatentPerturbed(nn.Module):
    """``base`` with noise added to the input of its output layer (the latent code)."""

    def __init__(self, base: nn.Module, *, init_scale: float) -> None:
        super().__init__()
        self.net = base
        head = classifier_layer(base)
        rho = math.log(math.expm1(init_scale))  # softplus^-1
        self.rho = nn.Parameter(torch.full((head.in_features,), rho))
        self.sampling = False  # draw latent noise (client side only)
        self.generator: torch.Generator | None = None  # noise source while sampling
        self.latent: torch.Tensor | None = None  # last perturbed code (read by the decoder)
        head.register_forward_pre_hook(self._perturb)

    @property
    def scale(self) -> torch.Tensor:
        return F.softplus(self.rho)

    def _perturb(self, _module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        z = args[0]
        if self.sampling:
            eps = torch.randn(z.shape, generator=self.generator, dtype=z.dtype).to(z.device)
            z = z + self.scale * eps
        else:  # noise at its mean; keeps rho in the graph (its gradient is then zero)
            z = z + 0.0 * self.scale
        self.latent = z
        return (z, *args[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_model("latent-perturb", options_type=LatentPerturbOptions,
                description="classifier with learnable latent noise before its output layer (perturbation defense)")
def build_latent_perturb(*, input_shape: tuple[int, ...], num_classes: int, options: LatentPerturbOptions) -> nn.Module:
    if options.base == "latent-perturb":
        raise GradleakError("latent-perturb cannot wrap itself")
    if not (options.init_scale > 0 and math.isfinite(options.init_scale)):
        raise GradleakError(f"latent-perturb: init_scale must be a positive number, got {options.init_scale}")
    from .imprint import base_options

    base = MODELS.get(options.base)(input_shape=input_shape, num_classes=num_classes,
                                    **base_options(options, model="latent-perturb"))
    return LatentPerturbed(base, init_scale=options.init_scale)
