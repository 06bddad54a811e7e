"""Learnable latent data perturbation (the seed defense, arXiv 2503.16542).

The client's model is ``latent-perturb`` (:mod:`gradleak.models.latent`): encoder -> latent
code z -> z' = z + softplus(rho) * eps -> predictor. Each client also keeps a private decoder
D (the proxy attacker, never shared) that reconstructs the image from z'. Minimax training,
alternating at every local step:

* decoder (attacker) step:   min_D  MSE(D(z'), x)          (z' detached)
* model (defender) step:     min_{encoder, rho, predictor}  CE(predictor(z'), y) + lam * corr(x, D(z'))^2

where corr is the Pearson correlation of an image and its reconstruction (per sample, then
averaged): the predictor and the perturbation keep accuracy while making what a decoder can
read from the latent code uncorrelated with the image. The paper summary gives no constants;
``lam`` (the spec value, default 1) and the decoder shape below are our choices.
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GradleakError
from ..models import complete_spec
from ..models.base import ModelSpec, classifier_layer
from .base import Defense, register_defense, require

DECODER_HIDDEN = 256  # width of the decoder's hidden layer (a 2-layer MLP is enough at 28-32 px)
DECODER_LR = 1e-3  # Adam step of the proxy attacker (it must keep up with the moving encoder)
INIT_SCALE = 0.5  # initial latent noise scale (see models/latent.py)


class Decoder(nn.Module):
    """Latent code -> image in [0, 1]: the client's proxy attacker."""

    def __init__(self, latent: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.net = nn.Sequential(nn.Linear(latent, DECODER_HIDDEN), nn.ReLU(),
                                 nn.Linear(DECODER_HIDDEN, math.prod(shape)), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(len(z), *self.shape)


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each pair of rows of ``a`` and ``b`` (flattened): shape ``B``."""
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-12)


@register_defense("perturb", description="learnable latent perturbation + decoder proxy attacker, minimax (perturb:lam)")
class LatentPerturbation(Defense):
    takes_value = True
    default_value = 1.0  # lam: weight of the correlation term against cross-entropy
    custom_loss = True
    # the attacker the defense is designed against, run by the server: a decoder trained on its own data
    extra_attacks = ("latent-decoder",)
    knowledge = ("architecture with the learned noise scale, weights and protocol; not the noise draws "
                 "nor the private decoder (matches with the noise at its mean, zero)")

    def __init__(self, value: float | None = None) -> None:
        super().__init__(value)
        self.decoders: dict[int, tuple[Decoder, torch.optim.Optimizer]] = {}
        self._generator = torch.Generator().manual_seed(0)  # replaced by prepare()

    def check(self) -> None:
        require(self.value is not None and self.value >= 0, f"perturb weight must be >= 0, got {self.value}")

    def details(self) -> dict[str, Any]:
        return {"lambda": self.value, "model": "latent-perturb", "decoder": f"mlp({DECODER_HIDDEN})"}

    def model_spec(self, spec: ModelSpec) -> ModelSpec:
        if spec.name == "latent-perturb":
            return spec
        return complete_spec(ModelSpec(name="latent-perturb", input_shape=spec.input_shape,
                                       num_classes=spec.num_classes,
                                       options={"base": spec.name, "init_scale": INIT_SCALE,
                                                "base_options": json.dumps(spec.options, sort_keys=True)}))

    # ------------------------------------------------------------------ players
    def decoder(self, model: nn.Module, *, shape: tuple[int, ...], client: int) -> tuple[Decoder, Any]:
        """Client ``client``'s decoder and its optimiser (created on first use, seeded)."""
        if client not in self.decoders:
            latent = classifier_layer(model).in_features
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=self._generator)))
                dec = Decoder(latent, shape)
            self.decoders[client] = (dec, torch.optim.Adam(dec.parameters(), lr=DECODER_LR))
        return self.decoders[client]

    def prepare(self, model: nn.Module, *, generator: torch.Generator, client: int = 0) -> None:
        """Switch on the latent noise, drawn from ``generator``."""
        if not hasattr(model, "rho"):
            raise GradleakError("the perturb defense needs the latent-perturb model (use Defense.model_spec)")
        model.sampling = True
        model.generator = generator
        self._generator = generator

    def local_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, client: int) -> None:
        """The proxy attacker's move: fit the decoder to the current perturbed codes."""
        dec, opt = self.decoder(model, shape=tuple(x.shape[1:]), client=client)
        with torch.no_grad():
            model(x)
            z = model.latent.detach()
        opt.zero_grad(set_to_none=True)
        F.mse_loss(dec(z), x).backward()
        opt.step()

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, client: int = 0) -> torch.Tensor:
        """The defender's objective: cross-entropy + lam * squared image/reconstruction correlation."""
        dec, _ = self.decoder(model, shape=tuple(x.shape[1:]), client=client)
        logits = model(x)
        ce = F.cross_entropy(logits, y) if logits.shape[-1] > 1 else F.binary_cross_entropy_with_logits(
            logits.squeeze(-1), y.to(logits.dtype))
        reconstruction = dec(model.latent)
        return ce + self.value * correlation(x, reconstruction).pow(2).mean()
