"""Train a generator prior on the attacker's own images (non-saturating GAN loss, Adam).

Small by design: the attacker of the GIAS threat model holds a generator for the kind of
images the clients hold; on 2 CPU cores a few thousand steps of a compact generator at
28-32 px is what fits (minutes), and it is enough for GI-z to start from plausible tissue and
for GIAS to adapt the generator per image. Flips and 90-degree rotations augment the data:
microscopy and ultrasound patches have no canonical orientation, and the attacker's split is small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..errors import GradleakError
from .generators import Discriminator, Generator, GeneratorSpec, build_generator


@dataclass
class PriorTrainConfig:
    arch: str = "dcgan"  # generator architecture (see GENERATORS): dcgan trains fastest on CPU
    steps: int = 1500  # generator updates (~2-3 min for dcgan at 28 px on 2 cores; samples look like tissue by ~1000)
    batch_size: int = 64  # images per step (DCGAN's 128 halves the CPU time per step at no visible cost)
    latent_dim: int = 64  # size of z (small images need few latent dimensions)
    width: int = 64  # channels of the first generator map; the discriminator mirrors it
    lr: float = 2e-4  # Adam step size for both networks (DCGAN's value; StyleGAN2 uses 2e-3 with betas 0, 0.99)
    beta1: float = 0.5  # Adam beta1 (DCGAN: 0.5 keeps the adversarial game stable)
    augment: bool = True  # random flips and 90-degree rotations of real images (orientation-free data)
    r1_weight: float = 1.0  # R1 penalty on real images every 4 steps (keeps the tiny-data discriminator in check)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "latent_dim", "width"):
            if int(getattr(self, name)) < 1:
                raise GradleakError(f"prior training {name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise GradleakError(f"prior training lr must be a positive finite number, got {self.lr}")


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips and (square images) 90-degree rotations, one draw per batch half."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if x.shape[-1] == x.shape[-2]:
        k = int(torch.randint(0, 4, (1,), generator=generator))
        x = torch.rot90(x, k, dims=(-2, -1))
    return x


def train_prior(
    images: torch.Tensor,
    *,
    config: PriorTrainConfig,
    generator: torch.Generator,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] = lambda _n: None,
) -> tuple[Generator, dict[str, Any]]:
    """Train a generator on ``images`` (N x C x H x W in [0, 1]); returns it (eval mode) and a log."""
    if images.ndim != 4 or images.shape[0] < 2:
        raise GradleakError(f"prior training needs N x C x H x W images with N >= 2, got shape {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()):
        raise GradleakError("prior training images contain NaN or Inf")
    device = torch.device(device)
    spec = GeneratorSpec(arch=config.arch, shape=tuple(images.shape[1:]), latent_dim=config.latent_dim, width=config.width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        gen = build_generator(spec).to(device)
        disc = Discriminator(spec.shape, width=config.width).to(device)
    betas = (config.beta1, 0.999)
    opt_g = torch.optim.Adam(gen.parameters(), lr=config.lr, betas=betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr, betas=betas)
    n = images.shape[0]
    bs = min(config.batch_size, n)
    log: dict[str, list[float]] = {"d_loss": [], "g_loss": []}
    gen.train()
    for step in range(config.steps):
        real = images[torch.randint(0, n, (bs,), generator=generator)]
        if config.augment:
            real = augment(real, generator)
        real = real.to(device)
        z = torch.randn((bs, spec.latent_dim), generator=generator).to(device)
        # discriminator: softplus(-D(real)) + softplus(D(fake)), R1 on real every 4 steps
        fake = gen(z)
        r1 = config.r1_weight > 0 and step % 4 == 0
        real.requires_grad_(r1)
        d_real = disc(real)
        d_loss = F.softplus(-d_real).mean() + F.softplus(disc(fake.detach())).mean()
        if r1:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            d_loss = d_loss + config.r1_weight * 4 / 2 * grad.pow(2).sum(dim=(1, 2, 3)).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # generator: non-saturating loss
        g_loss = F.softplus(-disc(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        log["d_loss"].append(float(d_loss.detach()))
        log["g_loss"].append(float(g_loss.detach()))
        if not (math.isfinite(log["d_loss"][-1]) and math.isfinite(log["g_loss"][-1])):
            raise GradleakError(f"prior training diverged at step {step} (loss is NaN/Inf); try a smaller lr")
        progress(1)
    gen.eval().requires_grad_(False)
    return gen, log
