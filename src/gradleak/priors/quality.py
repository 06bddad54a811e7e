"""How good is a prior? Nearest-neighbour and Frechet-distance figures without pretrained nets.

FID needs an ImageNet Inception network that cannot be downloaded here, and ImageNet
features say little about 28 px stained tissue anyway. Two weight-free figures instead:

* **Nearest neighbours** (per-pixel RMSE in [0, 1]). ``sample_to_train`` vs
  ``sample_to_held_out``: samples far closer to the training images than to unseen images of
  the same kind would be copies (memorisation). ``held_out_to_samples`` vs
  ``held_out_to_train``: how close an unseen real image gets to some sample, compared with
  how close it gets to some training image (coverage: the prior can express new images).
* **Pooled-pixel Frechet distance** (FID's formula on 4x4 average-pooled images, ``C*16``
  features): ``fd_samples`` (samples vs training images) between the floor ``fd_held_out``
  (unseen real images vs training images, the same number of images) and the ceiling
  ``fd_untrained`` (an untrained generator of the same architecture).
* **Projection PSNR**: each held-out image projected onto the generator's range (latent search
  on pixel MSE, best of a few starts): how close GI-z could get if the update pinned the image
  exactly, so an upper bound on what latent search alone recovers of images like the clients'.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .generators import Generator, build_generator

POOL = 4  # side of the average-pooled image the Frechet distance compares (C * 16 features)


@torch.no_grad()
def _squared_distances(queries: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    q, r = queries.flatten(1).double(), references.flatten(1).double()
    return (q.pow(2).sum(1, keepdim=True) - 2 * q @ r.T + r.pow(2).sum(1)[None]).clamp(min=0)


@torch.no_grad()
def nearest_neighbour_rmse(queries: torch.Tensor, references: torch.Tensor, *, exclude_self: bool = False) -> torch.Tensor:
    """Per query, the RMSE (per pixel, [0, 1] scale) to its nearest reference image."""
    d2 = _squared_distances(queries, references)
    if exclude_self:
        d2.fill_diagonal_(math.inf)
    return (d2.min(dim=1).values / queries[0].numel()).sqrt().float()


def nearest_neighbour_index(queries: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Per query, the index of its nearest reference image (for side-by-side pictures)."""
    return _squared_distances(queries, references).argmin(dim=1)


def pooled_features(images: torch.Tensor, *, side: int = POOL) -> np.ndarray:
    """``N x (C * side^2)`` features: the images average-pooled to ``side x side``."""
    return F.adaptive_avg_pool2d(images.double(), side).flatten(1).cpu().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID's ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` between two feature sets."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    from scipy import linalg  # lazy: scipy.linalg is ~0.2 s of every CLI start otherwise

    root = linalg.sqrtm(s_a @ s_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * root))


@torch.no_grad()
def _samples(gen: Generator, n: int, generator: torch.Generator) -> torch.Tensor:
    device = next(gen.parameters()).device
    was_training = gen.training
    gen.eval()
    out = torch.cat([gen(gen.sample_latent(min(256, n - i), generator=generator).to(device)).cpu()
                     for i in range(0, n, 256)])
    gen.train(was_training)
    return out.float()


def projection_psnr(
    gen: Generator, images: torch.Tensor, *, generator: torch.Generator, starts: int = 4, steps: int = 200,
    lr: float = 0.05,
) -> float:
    """Mean PSNR (data range 1) of ``images`` projected onto the range of ``gen`` by latent search."""
    device = next(gen.parameters()).device
    target = images.to(device).repeat(starts, 1, 1, 1)
    z = gen.sample_latent(target.shape[0], generator=generator).to(device).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(steps * f) for f in (3 / 8, 5 / 8, 7 / 8)], gamma=0.1)
    was_training = gen.training
    gen.eval()
    for _ in range(steps):
        loss = (gen(z) - target).pow(2).flatten(1).mean(1)
        (grad,) = torch.autograd.grad(loss.sum(), [z])
        z.grad = grad
        opt.step()
        sched.step()
    with torch.no_grad():
        mse = (gen(z) - target).pow(2).flatten(1).mean(1).view(starts, -1).min(dim=0).values
    gen.train(was_training)
    return float((-10 * torch.log10(mse.clamp(min=1e-12))).mean())


@torch.no_grad()
def sample_quality(
    gen: Generator, *, train: torch.Tensor, held_out: torch.Tensor | None, generator: torch.Generator,
    samples: int = 512, projected: int = 16,
) -> dict[str, float]:
    """Nearest-neighbour and Frechet figures of ``gen`` against its training and held-out images."""
    fake = _samples(gen, samples, generator)
    out: dict[str, float] = {
        "samples": samples,
        "sample_to_train": float(nearest_neighbour_rmse(fake, train).mean()),
        "train_to_train": float(nearest_neighbour_rmse(train, train, exclude_self=True).mean()),
    }
    if held_out is None or len(held_out) < 2:
        return out
    n = len(held_out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        untrained = build_generator(gen.spec).eval()
    train_features = pooled_features(train)
    out.update({
        "held_out": n,
        "sample_to_held_out": float(nearest_neighbour_rmse(fake, held_out).mean()),
        "held_out_to_samples": float(nearest_neighbour_rmse(held_out, fake).mean()),
        "held_out_to_train": float(nearest_neighbour_rmse(held_out, train).mean()),
        # Frechet distances on n images each, so the floor and the figure share the estimator's bias
        "fd_samples": frechet_distance(pooled_features(fake[:n]), train_features),
        "fd_held_out": frechet_distance(pooled_features(held_out), train_features),
        "fd_untrained": frechet_distance(pooled_features(_samples(untrained, n, generator)), train_features),
    })
    with torch.enable_grad():
        out["projection_psnr"] = projection_psnr(gen, held_out[:projected], generator=generator)
        out["projection_psnr_untrained"] = projection_psnr(untrained, held_out[:projected], generator=generator)
        out["projected"] = min(projected, n)
    return out
