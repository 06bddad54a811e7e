"""CI-Net's generator: a progressive-growing convolutional network from a 4x4 core.

Layout (PGGAN's generator, the paper's appendix did not survive extraction): fixed latent
``z0`` -> linear 4x4 core -> conv; per stage: interpolating x2 upsampling, ``convs`` 3x3 convs
with LeakyReLU(0.2) (and optional pixel-wise feature normalisation); image head(s) of 1x1
convs; a sigmoid scaled into the known data box. Sides that are not ``4 * 2**k`` (28 px) grow
to the next such side and are resized down (antialiased bilinear), keeping the field of view.

Two choices the paper leaves open, both measured on 32 histology patches fitted *directly*
(MSE to the truth, Adam lr 1e-3, 300 steps; the capacity a gradient-matching run can at best
use):

* ``copies``: 1 = one generator shared by the batch (sample i differs only by ``z0[i]``);
  ``N`` = N independent generators, one per sample, run as grouped convolutions (one op, the
  same FLOPs as the shared one). Shared width 32 (pixel norm, one head): SSIM 0.61 after 300
  steps (0.88 after 1000); per-sample width 16: 0.84 after 300; per-sample width 32: 0.90
  after 300 (a shared generator must store every image in the same weights, slow to fit).
* ``pixel_norm``: per-sample, per-stage heads, 300 steps: width 16 0.842 with / 0.839 without,
  width 32 0.833 with / 0.902 without, so it is off by default. Both are ``G(z0; theta)`` with only
  ``theta`` optimised; per-sample is block-diagonal ``theta``.
* ``skips``: every stage also writes an image through its own 1x1 head, and the upsampled
  sum is the output (PGGAN/StyleGAN2 "skip" outputs): coarse colour is fitted by the 4x4 head
  first, detail by the later ones, which keeps the progressive-growing idea inside one network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CORE_SIDE = 4  # the paper's 4x4 image core


def grown_side(side: int) -> int:
    """Smallest ``4 * 2**k`` that is >= ``side``."""
    grown = CORE_SIDE
    while grown < side:
        grown *= 2
    return grown


def stage_count(side: int) -> int:
    return int(round(math.log2(grown_side(side) / CORE_SIDE)))


class PixelNorm(nn.Module):
    """PGGAN's per-pixel feature normalisation: no batch statistics, so samples stay independent."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class CopiedConv(nn.Module):
    """``copies`` independent convolutions applied to the ``copies`` samples of a batch.

    With one copy this is a plain convolution over any batch; with N copies sample i goes
    through copy i only (a grouped convolution over the batch folded into channels).
    """

    def __init__(self, cin: int, cout: int, kernel: int, *, copies: int) -> None:
        super().__init__()
        self.copies = copies
        self.conv = nn.Conv2d(cin * copies, cout * copies, kernel, padding=kernel // 2, groups=copies)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.copies == 1:
            return self.conv(x)
        n, c, h, w = x.shape
        if n != self.copies:
            raise ValueError(f"a generator with {self.copies} per-sample copies got a batch of {n}")
        return self.conv(x.reshape(1, n * c, h, w)).reshape(n, -1, h, w)


class CopiedLinear(nn.Module):
    """``copies`` independent linear maps (one per sample), PyTorch's default init per copy."""

    def __init__(self, fin: int, fout: int, *, copies: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(fin)
        self.weight = nn.Parameter(torch.empty(copies, fin, fout).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(copies, fout).uniform_(-bound, bound))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.weight.shape[0] == 1:
            return z @ self.weight[0] + self.bias[0]
        if z.shape[0] != self.weight.shape[0]:
            raise ValueError(f"a generator with {self.weight.shape[0]} per-sample copies got a batch of {z.shape[0]}")
        return torch.einsum("nf,nfo->no", z, self.weight) + self.bias


class CINetGenerator(nn.Module):
    """Progressive-growing generator: 4x4 core, interpolating x2 stages, sigmoid into the box."""

    def __init__(
        self, *, channels: int, height: int, width: int, features: int, latent_dim: int,
        convs_per_stage: int, upsample: str, box: tuple[float, float], copies: int = 1,
        skips: bool = False, pixel_norm: bool = True,
    ) -> None:
        super().__init__()
        self.out_size = (height, width)
        self.features, self.upsample, self.box, self.copies, self.skips = features, upsample, box, copies, skips
        self.stages = stage_count(max(height, width))
        self.core = CopiedLinear(latent_dim, features * CORE_SIDE * CORE_SIDE, copies=copies)
        self.norm = PixelNorm() if pixel_norm else nn.Identity()
        self.core_conv = CopiedConv(features, features, 3, copies=copies)
        self.grow = nn.ModuleList(
            nn.ModuleList(CopiedConv(features, features, 3, copies=copies) for _ in range(convs_per_stage))
            for _ in range(self.stages)
        )
        heads = self.stages + 1 if skips else 1
        self.to_image = nn.ModuleList(CopiedConv(features, channels, 1, copies=copies) for _ in range(heads))

    def _block(self, conv: CopiedConv, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.leaky_relu(conv(x), 0.2))

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        kw = {} if self.upsample == "nearest" else {"align_corners": False}
        return F.interpolate(x, scale_factor=2, mode=self.upsample, **kw)

    def forward(self, z0: torch.Tensor) -> torch.Tensor:
        x = self.core(z0).view(z0.shape[0], self.features, CORE_SIDE, CORE_SIDE)
        x = self._block(self.core_conv, self.norm(F.leaky_relu(x, 0.2)))
        image = self.to_image[0](x) if self.skips else None
        for i, stage in enumerate(self.grow):
            x = self._up(x)
            for conv in stage:
                x = self._block(conv, x)
            if self.skips:
                image = self._up(image) + self.to_image[i + 1](x)
        x = torch.sigmoid(image if self.skips else self.to_image[0](x))
        if tuple(x.shape[-2:]) != self.out_size:
            x = F.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False, antialias=True)
        lo, hi = self.box
        return lo + (hi - lo) * x


def generator_parameters(
    *, channels: int, side: int, features: int, latent_dim: int, convs_per_stage: int, copies: int = 1,
    skips: bool = False,
) -> int:
    """P(G) without building the network (used to choose the width)."""
    stages = stage_count(side)
    conv = 9 * features * features + features
    heads = stages + 1 if skips else 1
    one = (
        latent_dim * features * CORE_SIDE**2 + features * CORE_SIDE**2  # linear core
        + conv * (1 + stages * convs_per_stage)  # core conv + growing stages
        + heads * (features * channels + channels)  # 1x1 image head(s)
    )
    return copies * one
