"""CI-Net: gradient inversion through an over-parameterized convolutional generator.

Instead of optimising pixels, an *untrained* convolutional generator ``G(z0; theta)`` with a
fixed random input ``z0`` (one latent vector per sample) produces the whole batch, and only
``theta`` is optimised to match the observed update (cosine distance, no regulariser, no
pretrained prior). The paper's three pillars:

1. a convolutional architecture: an implicit image prior (Ulyanov et al.'s deep image prior);
2. over-parameterization: ``P(G) > P(F)`` (generator vs. victim parameters), so the images
   the generator can produce include a gradient-matching solution. The width is chosen
   automatically as the smallest multiple of 8 with ``P(G) > param_ratio * P(F)``;
3. pixel intimacy: a progressive-growing layout (Karras et al.) from a 4x4 core, each stage
   doubling the side by *interpolating* (bilinear) upsampling, which ties new pixels to their
   neighbours and regularises total variation implicitly.

The paper's appendix (exact layer list) did not survive extraction; the layout
(:mod:`.cinet_generator`) follows PGGAN's generator: latent -> linear 4x4 core -> conv; per
stage: bilinear x2, two 3x3 convs with LeakyReLU(0.2); an image head per stage whose upsampled
sum passes a sigmoid scaled into the known data box. By default every sample gets its own
generator copy (``weights="per-sample"``, block-diagonal ``theta``): fitting 32 patches
directly, it reached SSIM 0.84 in 300 steps where the shared generator reached 0.61
(:mod:`.cinet_generator` has the measurements); ``weights="shared"`` is one generator for the
batch. Growing is architectural: all stages are optimised jointly from the start.

Choices the text leaves open, and why: Adam on the raw gradient with the lr annealed to 0
(IG's signed steps help pixels, whose gradients span orders of magnitude; Adam already
normalises each weight); the sigmoid output uses the attacker's knowledge of the data range
(the paper's Figure 3 shows raw outputs from -0.16 to 0.62, so theirs was unbounded). The
ground truth never enters: a restart is a fresh generator and ``z0``, ranked by gradient loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import GradleakError
from ..observation import Observation
from .base import Progress, Reconstruction, register_attack
from .bn_prior import check_bn_options
from .cinet_generator import CINetGenerator, PixelNorm, generator_parameters, grown_side
from .labels import LabelEstimate
from .loop import Candidate, LoopSettings, optimise
from .objective import GradientMatcher
from .optimisation import OptimisationAttack, check_common, data_box, stop_rule

__all__ = ["CINet", "CINetConfig", "CINetGenerator", "PixelNorm", "choose_width", "generator_parameters", "grown_side"]


@dataclass
class CINetConfig:
    iterations: int = 50  # Adam steps; one costs ~1.1x an IG step, the victim dominates (docs/cinet.md)
    restarts: int = 1  # fresh generator + z0 per restart; the lowest gradient loss wins
    lr: float = 1e-3  # Adam step on theta; 1e-2 saturated the output sigmoid in a batch-4 probe, 1e-3 kept improving
    width: int = 0  # generator channels; 0 = smallest multiple of 8 with P(G) > param_ratio * P(victim)
    param_ratio: float = 1.0  # over-parameterization factor for the automatic width (paper: P(G) > P(F))
    max_width: int = 512  # cap of the automatic width (memory/time guard; the paper's largest is 512)
    latent_dim: int = 128  # size of each sample's fixed random input z0
    convs_per_stage: int = 2  # 3x3 convolutions per growing stage (PGGAN uses 2)
    upsample: str = "bilinear"  # interpolating upsampling ("bilinear"/"bicubic"); "nearest" removes pixel intimacy
    signed: bool = False  # Adam on the sign of the gradient (IG's pixel trick); off: Adam already normalises per weight
    schedule: str = "cosine"  # lr schedule: "cosine"/"linear" anneal to 0, "step" (x0.1 at 3/8, 5/8, 7/8 as IG), "none"
    distance: str = "cosine"  # gradient distance: cosine (paper Eq. 3) or l2
    entries: str = "all"  # which update entries to match: all, top-layers:K, largest:F, nonzero
    precision: str = "float32"  # compute dtype: "float32" or "float64"
    keep_best: bool = True  # return the output with the lowest gradient loss seen, not the last one
    weights: str = "per-sample"  # "per-sample": one generator copy per sample (grouped convs); "shared": one for the batch
    skips: bool = True  # every stage adds its own image head (coarse colour first, detail later)
    pixel_norm: bool = False  # PGGAN's pixel norm after each conv (direct fit at width 32: 0.83 with, 0.90 without)
    # A plateau (best loss down by less than tol, relative, over this many steps) anneals the rest of the
    # schedule within as many steps again, then stops (step schedule: decays early). 0: fixed schedule.
    patience: int = 20
    tol: float = 1e-2  # progress: the best loss fell by more than this fraction within `patience` iterations
    # R_BN (GradInversion, Yin et al. 2021; gradleak.attacks.bn_prior): weight of the BatchNorm-statistics
    # prior. 0 (default) leaves the attack as published; needs a model with BatchNorm.
    bn_weight: float = 0.0
    bn_stats: str = "auto"  # R_BN targets: running (sent buffers), shared (extracted from returned buffers), auto

    def __post_init__(self) -> None:
        check_common(self)
        check_bn_options(self)
        if self.width < 0 or self.max_width < 1:
            raise GradleakError(f"width must be >= 0 (0 = automatic) and max_width >= 1, got {self.width}, {self.max_width}")
        if not (self.param_ratio > 0 and math.isfinite(self.param_ratio)):
            raise GradleakError(f"param_ratio must be a positive finite number, got {self.param_ratio}")
        if self.latent_dim < 1 or self.convs_per_stage < 1:
            raise GradleakError("latent_dim and convs_per_stage must be >= 1")
        if self.schedule not in SCHEDULES:
            raise GradleakError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.weights not in WEIGHTS:
            raise GradleakError(f"unknown weights {self.weights!r}; choose one of: {', '.join(WEIGHTS)}")
        if self.upsample not in UPSAMPLE_MODES:
            raise GradleakError(f"unknown upsample {self.upsample!r}; choose one of: {', '.join(UPSAMPLE_MODES)}")


UPSAMPLE_MODES = ("bilinear", "bicubic", "nearest")
SCHEDULES = ("cosine", "linear", "step", "none")
WEIGHTS = ("per-sample", "shared")


def copies_for(cfg: CINetConfig, num_samples: int) -> int:
    """Independent generator copies: one per sample, or one for the whole batch."""
    return num_samples if cfg.weights == "per-sample" else 1


def choose_width(*, victim_parameters: int, channels: int, side: int, cfg: CINetConfig, num_samples: int = 1) -> int:
    """The explicit width, or the smallest multiple of 8 with P(G) > param_ratio * P(F)."""
    if cfg.width:
        return cfg.width
    target = cfg.param_ratio * victim_parameters
    width = 8
    while width < cfg.max_width and generator_parameters(
        channels=channels, side=side, features=width, latent_dim=cfg.latent_dim, convs_per_stage=cfg.convs_per_stage,
        copies=copies_for(cfg, num_samples), skips=cfg.skips,
    ) <= target:
        width += 8
    return min(width, cfg.max_width)


@register_attack("cinet", description="CI-Net: over-parameterized progressive conv generator, Adam on its weights")
class CINet(OptimisationAttack):
    Config = CINetConfig

    def loop_settings(self, observation: Observation) -> LoopSettings:
        cfg = self.config
        return LoopSettings(optimizer="adam", iterations=cfg.iterations, lr=cfg.lr, signed=cfg.signed,
                            step_decay=cfg.schedule == "step",
                            anneal=cfg.schedule if cfg.schedule in ("cosine", "linear") else "none", box=None,
                            stop=stop_rule(cfg))

    def build_generator(self, observation: Observation, *, matcher: GradientMatcher, seed: int) -> CINetGenerator:
        """A fresh generator whose weights come from ``seed`` (torch's init uses the global RNG)."""
        cfg = self.config
        channels, height, width = observation.input_shape
        victim = sum(p.numel() for p in matcher.model.parameters())
        self.last_victim_parameters = victim
        copies = copies_for(cfg, observation.num_samples)
        features = choose_width(victim_parameters=victim, channels=channels, side=max(height, width), cfg=cfg,
                                num_samples=observation.num_samples)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = CINetGenerator(
                channels=channels, height=height, width=width, features=features, latent_dim=cfg.latent_dim,
                convs_per_stage=cfg.convs_per_stage, upsample=cfg.upsample, box=data_box(observation),
                copies=copies, skips=cfg.skips, pixel_norm=cfg.pixel_norm,
            )
        return gen.to(matcher.device, matcher.dtype)

    def search(
        self, observation: Observation, *, matcher: GradientMatcher, labels: LabelEstimate | None,
        generator: torch.Generator, progress: Progress,
    ) -> Candidate:
        assert labels is not None
        y = labels.labels.to(matcher.device)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        gen = self.build_generator(observation, matcher=matcher, seed=seed)
        z0 = torch.randn((observation.num_samples, self.config.latent_dim), generator=generator)
        z0 = z0.to(matcher.device, matcher.dtype)  # fixed input: only theta is optimised
        params = [p for p in gen.parameters()]
        best: list = [math.inf, None]  # lowest gradient loss seen and the output that had it

        def keep(x: torch.Tensor, value: float) -> None:
            if math.isfinite(value) and value < best[0]:
                best[:] = [value, x.detach().clone()]

        def objective() -> torch.Tensor:
            # The loss of the generator's output jumps from step to step (measured: best 0.065, last
            # 0.24 after 1000 steps), so the output with the lowest gradient loss seen is returned,
            # a choice the attacker makes without the ground truth.
            x = gen(z0)
            loss = matcher(x, y)
            keep(x, float(loss.detach()))
            return loss

        trace = optimise(objective=objective, variables=params, settings=self.loop_settings(observation),
                         progress=progress)
        with torch.no_grad():
            last = gen(z0)
        last_loss = self.score(matcher, last, y)
        keep(last, last_loss)
        x, loss = (best[1], best[0]) if self.config.keep_best and best[1] is not None else (last, last_loss)
        self.last_generator_parameters = sum(p.numel() for p in params)
        self.last_width = gen.features
        return Candidate(x, y, loss, trace)

    def reconstruct(
        self, observation: Observation, *, generator: torch.Generator, device: torch.device, progress: Progress
    ) -> Reconstruction:
        result = super().reconstruct(observation, generator=generator, device=device, progress=progress)
        result.notes.append(
            f"generator width {self.last_width} ({self.config.weights} weights): P(G) = {self.last_generator_parameters}, "
            f"P(victim) = {self.last_victim_parameters}"
        )
        return result
