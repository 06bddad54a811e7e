"""Defenses that transform the finished update: noise, norm clipping, pruning.

All act on the update in the units it is shared in (a gradient under fedsgd, a weight change
under fedavg), so ``noise:0.01`` means a per-entry standard deviation of 0.01 in those units.
Randomness comes from the caller's generator only (reproducible runs).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..fl.protocol import Params, Protocol
from .base import Defense, against_noise, register_defense, require
from .rero import gaussian_mu


@register_defense("none", description="no defense (the baseline)")
class NoDefense(Defense):
    post_hoc = True
    knowledge = "architecture, weights and protocol"


def _randn_like(t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device)


@register_defense("noise", description="add Gaussian noise N(0, s^2) to every update entry (noise:s)")
class GaussianNoise(Defense):
    post_hoc = True
    takes_value = True
    knowledge = "architecture, weights, protocol and the noise scale (L2 matching, more restarts)"

    def check(self) -> None:
        require(self.value is not None and self.value >= 0, f"noise scale must be >= 0, got {self.value}")

    def postprocess(self, update: Params, *, generator: torch.Generator) -> Params:
        return {k: v + self.value * _randn_like(v, generator) for k, v in update.items()}

    def adaptive(self, attack_options: dict[str, Any], *, attack_fields: set[str]) -> dict[str, Any]:
        # Gaussian noise makes the squared L2 distance the (negative log-)likelihood.
        return against_noise(attack_options, attack_fields=attack_fields, distance="l2")

    def gdp_mu(self, *, protocol: Protocol, candidate_updates: Callable[[], list[list[Params]]]) -> tuple[float | None, str]:
        # No clipping: the sensitivity is the widest spread of the candidates' clean updates.
        spread = max((_distance(a, b) for slot in candidate_updates() for i, a in enumerate(slot) for b in slot[i + 1:]),
                     default=0.0)
        return gaussian_mu(sensitivity=spread, sigma=self.value), \
            "gaussian: max distance between the candidates' clean updates / noise std (this candidate set only)"


@register_defense("laplace", description="add Laplacian noise with scale b to every update entry (laplace:b)")
class LaplaceNoise(GaussianNoise):
    knowledge = "architecture, weights, protocol and the noise scale (L2 matching, more restarts)"

    def check(self) -> None:
        require(self.value is not None and self.value >= 0, f"laplace scale must be >= 0, got {self.value}")

    def gdp_mu(self, *, protocol: Protocol, candidate_updates: Callable[[], list[list[Params]]]) -> tuple[float | None, str]:
        return None, "laplace noise: no Gaussian-DP guarantee computed"

    def postprocess(self, update: Params, *, generator: torch.Generator) -> Params:
        out = {}
        for k, v in update.items():
            # inverse CDF: b * sign(u) * -log(1 - 2|u|), u ~ U(-1/2, 1/2)
            u = torch.rand(v.shape, generator=generator, dtype=torch.float64) - 0.5
            noise = -self.value * u.sign() * torch.log1p(-2 * u.abs())
            out[k] = v + noise.to(v.dtype).to(v.device)
        return out


def _distance(a: Params, b: Params) -> float:
    return math.sqrt(sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in a))


def global_norm(update: Params) -> float:
    return math.sqrt(sum(float(v.double().pow(2).sum()) for v in update.values()))


@register_defense("clip", description="scale the whole update down to L2 norm <= C (clip:C)")
class NormClip(Defense):
    post_hoc = True
    takes_value = True
    knowledge = "architecture, weights and protocol (cosine matching is blind to the rescaling)"

    def check(self) -> None:
        require(self.value is not None and self.value > 0, f"clipping norm must be > 0, got {self.value}")

    def postprocess(self, update: Params, *, generator: torch.Generator) -> Params:
        norm = global_norm(update)
        factor = min(1.0, self.value / norm) if norm > 0 else 1.0
        return {k: v * factor for k, v in update.items()}

    def adaptive(self, attack_options: dict[str, Any], *, attack_fields: set[str]) -> dict[str, Any]:
        return {"distance": "cosine"} if "distance" in attack_fields else {}


def _prune_mask(values: torch.Tensor, fraction: float) -> torch.Tensor:
    """Keep the ``1 - fraction`` largest magnitudes (at least one entry)."""
    flat = values.reshape(-1).abs()
    keep = max(1, int(round((1.0 - fraction) * flat.numel())))
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[torch.topk(flat, keep).indices] = True
    return mask.reshape(values.shape)


@register_defense("prune", description="zero the fraction p of smallest-magnitude entries in each tensor (prune:p)")
class Prune(Defense):
    post_hoc = True
    takes_value = True
    knowledge = "architecture, weights, protocol and which entries survived (matches only the non-zero entries)"

    def check(self) -> None:
        require(self.value is not None and 0.0 <= self.value < 1.0,
                f"pruning fraction must be in [0, 1), got {self.value}")

    def postprocess(self, update: Params, *, generator: torch.Generator) -> Params:
        return {k: v * _prune_mask(v, self.value) for k, v in update.items()}

    def adaptive(self, attack_options: dict[str, Any], *, attack_fields: set[str]) -> dict[str, Any]:
        return {"entries": "nonzero"} if "entries" in attack_fields and self.value > 0 else {}


@register_defense("prune-global", description="zero the fraction p of smallest-magnitude entries over the whole update")
class PruneGlobal(Prune):
    def postprocess(self, update: Params, *, generator: torch.Generator) -> Params:
        names = list(update)
        flat = torch.cat([update[k].reshape(-1) for k in names])
        mask = _prune_mask(flat, self.value)
        out, offset = {}, 0
        for k in names:
            n = update[k].numel()
            out[k] = update[k] * mask[offset:offset + n].reshape(update[k].shape)
            offset += n
        return out
