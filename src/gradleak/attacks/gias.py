"""GI-z and GIAS (GI-z/w): gradient inversion with a generative image prior (Jeon et al. 2021).

GI-z searches the latent space of a pretrained generator ``G_w`` so that the generated batch
``G_w(z_1..z_B)`` reproduces the observed update (cosine distance, optional layer selection or
largest-entry matching against pruned updates, a penalty keeping ``||z||^2 / k`` near 1 so z
stays where the generator was trained). Restarts are ranked by gradient loss. GIAS then gives
every image its own copy of the generator and fine-tunes each copy's weights together with
its latent with a small learning rate, so images the generator cannot produce exactly are
still reached, starting from the natural image GI-z found. The final batch is the GI-z or
GIAS result with the lower gradient loss (attacker-computable, never the ground truth).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from ..errors import GradleakError
from ..observation import Observation
from ..priors.checkpoint import load_prior
from ..priors.generators import Generator
from .base import Attack, Progress, Reconstruction, register_attack
from .bn_prior import check_bn_options, with_bn_prior
from .inverting import total_variation
from .labels import LabelEstimate, recover_labels
from .loop import Candidate, LoopSettings, Plateau, best_of_restarts, optimise
from .objective import GradientMatcher
from .optimisation import PRECISIONS, check_common, data_box, stop_rule


@dataclass
class GIZConfig:
    prior: str | None = None  # generator checkpoint directory (`gradleak prior train`; CLI --prior); required
    latent_space: str = "z"  # "z", or "w+" for stylegan priors (one style per layer: more freedom)
    iterations: int = 500  # Adam steps per restart (the loss flattens by ~300 on LeNet/histology at 28 px)
    restarts: int = 4  # random latent starts; the lowest gradient loss wins (the latent landscape has many basins)
    lr: float = 0.05  # Adam step size on the latent (decays x0.1 at 3/8, 5/8, 7/8)
    latent_weight: float = 1e-2  # weight of (||z||^2/k - 1)^2: keeps z on the Gaussian shell the prior knows
    tv_weight: float = 0.0  # total variation on the generated images (the generator is the image prior)
    distance: str = "cosine"  # gradient distance: "cosine" (GIAS, scale-free) or "l2"
    entries: str = "all"  # which update entries to match: all, top-layers:K, largest:F (vs pruning), nonzero
    step_decay: bool = True  # multi-step learning-rate decay as in IG/GIAS
    precision: str = "float32"  # compute dtype: "float32" or "float64"
    # A plateau (best loss down by less than tol, relative, over this many steps) moves a search to its next
    # decay stage early; a plateau at the last stage stops it. 0 runs the fixed schedule.
    patience: int = 50
    tol: float = 1e-2  # progress: the best loss fell by more than this fraction within `patience` iterations
    # R_BN (GradInversion, Yin et al. 2021; gradleak.attacks.bn_prior): weight of the BatchNorm-statistics
    # prior. 0 (default) leaves the attack as published; needs a model with BatchNorm.
    bn_weight: float = 0.0
    bn_stats: str = "auto"  # R_BN targets: running (sent buffers), shared (extracted from returned buffers), auto

    def __post_init__(self) -> None:
        check_common(self)
        check_bn_options(self)
        if self.latent_space not in ("z", "w+"):
            raise GradleakError(f"unknown latent_space {self.latent_space!r}; choose one of: z, w+")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise GradleakError(f"lr must be a positive finite number, got {self.lr}")


@dataclass
class GIASConfig(GIZConfig):
    gias_iterations: int = 500  # Adam steps of the per-image generator fine-tuning after GI-z
    gias_lr: float = 1e-3  # step size on the generator copies' weights (small: stay near the prior)
    gias_latent_lr: float = 1e-3  # step size on the latents during fine-tuning (GI-z already placed them)
    anchor_weight: float = 0.0  # L2 pull of each copy towards the prior's weights (0: the small lr is the trust region)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gias_iterations < 0:
            raise GradleakError(f"gias_iterations must be >= 0, got {self.gias_iterations}")
        for name in ("gias_lr", "gias_latent_lr"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise GradleakError(f"{name} must be a positive finite number, got {getattr(self, name)}")


def latent_penalty(latent: torch.Tensor, space: str) -> torch.Tensor:
    """z: mean (||z||^2 / k - 1)^2 (a Gaussian z lives near that shell); w+: spread across layers."""
    if space == "z":
        return ((latent.pow(2).mean(dim=-1) - 1.0) ** 2).mean()
    return (latent - latent.mean(dim=1, keepdim=True)).pow(2).mean()


@dataclass
class LatentResult:
    candidate: Candidate
    latent: torch.Tensor  # the search-space variable of the chosen restart


class PriorAttack(Attack):
    """Shared frame of the generative-prior attacks: prior loading, labels, GI-z restarts, GIAS."""

    uses_attacker_data = True  # simulated clients never hold the attacker's own split (priors/data.py)

    def total_iterations(self) -> int:
        cfg = self.config
        return cfg.iterations * cfg.restarts + int(getattr(cfg, "gias_iterations", 0))

    def prior_generator(
        self, observation: Observation, device: torch.device, generator: torch.Generator, progress: Progress
    ) -> tuple[Generator, dict[str, Any]]:
        """The generator to search (a loaded checkpoint here; GIML learns one)."""
        if not self.config.prior:
            raise GradleakError(f"attack {self.name!r} needs a generator prior: pass --prior DIR (see `gradleak prior train`)")
        return load_prior(self.config.prior, expected_shape=tuple(observation.input_shape), device=device)

    def label_estimator(self) -> str:
        """The large-batch label estimator (see gradleak.attacks.labels)."""
        return "posterior"

    def reconstruct(
        self, observation: Observation, *, generator: torch.Generator, device: torch.device, progress: Progress
    ) -> Reconstruction:
        cfg = self.config
        gen, info = self.prior_generator(observation, device, generator, progress)
        matcher = GradientMatcher(observation, distance=cfg.distance, device=device, dtype=PRECISIONS[cfg.precision],
                                  entries=cfg.entries)
        gen = gen.to(matcher.dtype)
        labels = recover_labels(observation, model=matcher.model, generator=generator, estimator=self.label_estimator())
        matcher, bn_note = with_bn_prior(matcher, observation, weight=cfg.bn_weight, source=cfg.bn_stats)
        results = [self.latent_search(observation, gen=gen, matcher=matcher, labels=labels, generator=generator,
                                      progress=progress) for _ in range(cfg.restarts)]
        best = best_of_restarts([r.candidate for r in results])
        chosen = results[best].candidate
        notes = [f"prior: {cfg.prior} ({gen.spec.arch}, trained on: {info.get('attacker_split', 'unknown')})"]
        notes += [bn_note] if bn_note else []
        trace = list(chosen.trace)
        if getattr(cfg, "gias_iterations", 0) > 0:
            tuned = self.parameter_search(observation, gen=gen, latent=results[best].latent, matcher=matcher,
                                          labels=labels, progress=progress)
            trace += tuned.trace
            if tuned.loss <= chosen.loss:
                chosen = Candidate(tuned.inputs, tuned.labels, tuned.loss, trace)
            else:
                notes.append(f"GIAS fine-tuning raised the gradient loss ({tuned.loss:.4g} > {chosen.loss:.4g}); kept GI-z")
        losses = [r.candidate.loss for r in results]
        losses[best] = chosen.loss
        return Reconstruction(
            inputs=chosen.inputs.detach().cpu().float(), labels=chosen.labels.detach().cpu().long(), attack=self.name,
            config=dataclasses.asdict(cfg), label_method=labels.method, loss_trace=trace, restart_losses=losses,
            restart_traces=[r.candidate.trace for r in results[:best]] + [trace] + [r.candidate.trace for r in results[best + 1:]],
            chosen_restart=best, iterations=cfg.iterations, notes=notes,
        )

    def images(self, gen: Generator, latent: torch.Tensor, observation: Observation) -> torch.Tensor:
        lo, hi = data_box(observation)
        return lo + (hi - lo) * gen.synthesize(latent, self.config.latent_space)

    def latent_search(
        self, observation: Observation, *, gen: Generator, matcher: GradientMatcher, labels: LabelEstimate,
        generator: torch.Generator, progress: Progress,
    ) -> LatentResult:
        """GI-z: one restart of the latent search from a random z."""
        cfg = self.config
        y = labels.labels.to(matcher.device)
        z = gen.sample_latent(observation.num_samples, generator=generator).to(matcher.device, matcher.dtype)
        latent = gen.to_search_space(z, cfg.latent_space).detach().clone().requires_grad_(True)

        def objective() -> torch.Tensor:
            x = self.images(gen, latent, observation)
            loss = matcher(x, y) + cfg.latent_weight * latent_penalty(latent, cfg.latent_space)
            return loss + cfg.tv_weight * total_variation(x) if cfg.tv_weight else loss

        settings = LoopSettings(optimizer="adam", iterations=cfg.iterations, lr=cfg.lr, step_decay=cfg.step_decay,
                                stop=stop_rule(cfg))
        trace = optimise(objective=objective, variables=[latent], settings=settings, progress=progress)
        with torch.no_grad():
            x = self.images(gen, latent, observation)
        return LatentResult(Candidate(x, y, matcher.loss_value(x, y), trace), latent.detach())

    def parameter_search(
        self, observation: Observation, *, gen: Generator, latent: torch.Tensor, matcher: GradientMatcher,
        labels: LabelEstimate, progress: Progress,
    ) -> Candidate:
        """GIAS: fine-tune one generator copy per image (and its latent) from the GI-z solution.

        The copies are one stacked tensor per generator parameter (leading dimension = image),
        evaluated with ``torch.func.vmap``: the same maths as a list of deep copies with one Adam
        (Adam is element-wise), at a fraction of the cost for large batches and StyleGAN priors.
        """
        cfg = self.config
        y = labels.labels.to(matcher.device)
        synthesis = _Synthesis(gen, cfg.latent_space)
        anchors = {k: v.detach() for k, v in synthesis.named_parameters()}
        buffers = dict(synthesis.named_buffers())
        b = latent.shape[0]
        copies = {k: v.unsqueeze(0).repeat(b, *([1] * v.ndim)).requires_grad_(True) for k, v in anchors.items()}
        latents = latent.detach().clone().requires_grad_(True)
        per_copy = vmap(lambda weights, z: functional_call(synthesis, (weights, buffers), (z[None],))[0])
        opt = torch.optim.Adam([{"params": list(copies.values()), "lr": cfg.gias_lr},
                                {"params": [latents], "lr": cfg.gias_latent_lr}])
        n = cfg.gias_iterations
        milestones = [int(n * f) for f in (3 / 8, 5 / 8, 7 / 8)] if cfg.step_decay else []
        base_lrs = [group["lr"] for group in opt.param_groups]
        plateau, stage = Plateau(stop_rule(cfg)), 0  # as the shared loop: a plateau decays early, then stops
        lo, hi = data_box(observation)

        def batch() -> torch.Tensor:
            return lo + (hi - lo) * per_copy(copies, latents)

        trace: list[float] = []
        variables = [*copies.values(), latents]
        for it in range(n):
            while stage < len(milestones) and it >= milestones[stage]:
                stage += 1
            for group, lr in zip(opt.param_groups, base_lrs):
                group["lr"] = lr * 0.1**stage
            x = batch()
            loss = matcher(x, y) + cfg.latent_weight * latent_penalty(latents, cfg.latent_space)
            if cfg.tv_weight:
                loss = loss + cfg.tv_weight * total_variation(x)
            if cfg.anchor_weight:
                loss = loss + cfg.anchor_weight * sum((copies[k] - a).pow(2).sum() for k, a in anchors.items())
            # autograd.grad, not backward(): the victim model's .grad stays untouched; the
            # mapping network is unused when searching W+, hence allow_unused
            grads = torch.autograd.grad(loss, variables, allow_unused=True)
            for v, g in zip(variables, grads):
                v.grad = g
            opt.step()
            value = float(loss.detach())
            trace.append(value)
            progress(1)
            flat = plateau.reached(value)
            if flat and stage < len(milestones):
                stage += 1
                plateau.reset()
            elif not math.isfinite(value) or flat:
                progress(n - it - 1)
                break
        with torch.no_grad():
            x = batch()
        return Candidate(x, y, matcher.loss_value(x, y), trace)


class _Synthesis(nn.Module):
    """``forward(latent) = gen.synthesize(latent, space)``: what ``functional_call`` runs per copy."""

    def __init__(self, gen: Generator, space: str) -> None:
        super().__init__()
        self.gen, self.space = gen, space

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.gen.synthesize(latent, self.space)


@register_attack("giz", description="GI-z: latent search of a pretrained generator prior (needs --prior)")
class GIZ(PriorAttack):
    Config = GIZConfig


@register_attack("gias", description="GIAS (GI-z/w): GI-z, then per-image generator fine-tuning (needs --prior)")
class GIAS(PriorAttack):
    Config = GIASConfig
