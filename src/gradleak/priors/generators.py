"""Generator architectures used as image priors (GI-z, GIAS, GIML).

Every generator maps a latent batch to images in [0, 1] of a fixed ``C x H x W``; attacks
rescale to the data box. Two families are registered in :data:`GENERATORS`:

* ``dcgan``: the DCGAN generator (Radford et al. 2016): a linear layer to a small feature
  map, then (upsample, conv, BatchNorm, ReLU) blocks; compact enough to train on 2 CPU cores.
* ``stylegan``: a compact StyleGAN2-style generator (Karras et al. 2020): an MLP mapping
  network z -> w, a learned constant, modulated/demodulated 3x3 convolutions with one style
  vector per layer (the W+ space GI-z can search), per-layer noise inputs and skip toRGB outputs.

Both build for any size by choosing a base map of ``ceil(side / 2^k)`` and centre-cropping,
so 8..64 px (28 px MedMNIST included) work without special cases.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GradleakError
from ..registry import Registry


@dataclass(frozen=True)
class GeneratorSpec:
    """What is needed to rebuild a generator: the JSON half of a prior checkpoint."""

    arch: str  # registry name: "dcgan" or "stylegan"
    shape: tuple[int, int, int]  # C, H, W of the generated images
    latent_dim: int = 64  # size of z (64 is plenty for 28-64 px medical patches; GIAS used 128-512 for faces)
    width: int = 64  # channels of the first feature map; later maps halve (min 16)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "GeneratorSpec":
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise GradleakError(f"generator spec has unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
        from ..validation import as_int, as_shape, as_str

        if "arch" not in data or "shape" not in data:
            raise GradleakError(f"generator spec needs 'arch' and 'shape', got keys {sorted(data)}")
        spec = cls(arch=as_str(data["arch"], what="generator spec arch"),  # strict: "64" or 8.5 are refused
                   shape=as_shape(data["shape"], what="generator spec shape"),
                   latent_dim=as_int(data.get("latent_dim", 64), what="generator spec latent_dim"),
                   width=as_int(data.get("width", 64), what="generator spec width"))
        spec.validate()
        return spec

    def validate(self) -> None:
        GENERATORS.get(self.arch)
        if len(self.shape) != 3 or not (1 <= self.shape[0] <= 4) or not all(4 <= s <= 256 for s in self.shape[1:]):
            raise GradleakError(f"generator shape must be C x H x W with C in 1..4 and sides in 4..256, got {self.shape}")
        if not (1 <= self.latent_dim <= 1024 and 4 <= self.width <= 1024):
            raise GradleakError(f"generator latent_dim/width out of range: {self.latent_dim}/{self.width}")


def _layout(side: int) -> tuple[int, int]:
    """(upsampling blocks, base side): 2 blocks up to 32 px, 3 above, base = ceil(side / 2^k)."""
    blocks = 1 if side <= 12 else (2 if side <= 32 else 3)
    return blocks, math.ceil(side / 2**blocks)


def _crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


class Generator(nn.Module):
    """Common interface: ``latents(n, generator)`` draws inputs, ``forward`` maps them to images."""

    spec: GeneratorSpec

    def sample_latent(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn((n, self.spec.latent_dim), generator=generator)

    def to_search_space(self, z: torch.Tensor, space: str) -> torch.Tensor:
        """The variable GI-z optimises for latent ``z`` ("z", or "w+" where supported)."""
        if space != "z":
            raise GradleakError(f"{self.spec.arch} generator searches only the 'z' space, not {space!r}")
        return z

    def synthesize(self, latent: torch.Tensor, space: str) -> torch.Tensor:
        """Images from a search-space variable (the inverse of :meth:`to_search_space`)."""
        return self(latent)


GENERATORS: Registry[Callable[[GeneratorSpec], Generator]] = Registry("generator architecture")


@GENERATORS.register("dcgan", description="DCGAN generator: linear -> (upsample, conv, BN, ReLU) blocks -> sigmoid")
class DCGANGenerator(Generator):
    def __init__(self, spec: GeneratorSpec) -> None:
        super().__init__()
        self.spec = spec
        c, h, w = spec.shape
        blocks, base = _layout(max(h, w))
        self.base = base
        self.fc = nn.Linear(spec.latent_dim, spec.width * base * base)
        self.bn0 = nn.BatchNorm2d(spec.width)
        layers: list[nn.Module] = []
        ch = spec.width
        for _ in range(blocks):
            out = max(16, ch // 2)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, out, 3, padding=1),
                       nn.BatchNorm2d(out), nn.ReLU()]
            ch = out
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(ch, c, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.fc(z).view(z.shape[0], self.spec.width, self.base, self.base)))
        x = torch.sigmoid(self.out(self.body(x)))
        return _crop(x, *self.spec.shape[1:])


class ModulatedConv(nn.Module):
    """StyleGAN2 modulated 3x3 convolution with weight demodulation (grouped-conv form)."""

    def __init__(self, cin: int, cout: int, style_dim: int, *, kernel: int = 3, demodulate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel) / math.sqrt(cin * kernel * kernel))
        self.affine = nn.Linear(style_dim, cin)
        # styles start at 1 +- O(1) for a unit-RMS w (StyleGAN2's equalised affine layer); PyTorch's
        # default init gives +-1 %, so every z drew the same image and training never escaped it
        nn.init.normal_(self.affine.weight, std=1.0 / math.sqrt(style_dim))
        nn.init.ones_(self.affine.bias)
        self.demodulate, self.pad = demodulate, kernel // 2

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, cin, h, w = x.shape
        s = self.affine(style)  # B x Cin
        weight = self.weight[None] * s[:, None, :, None, None]  # B x Cout x Cin x k x k
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        out = F.conv2d(x.reshape(1, b * cin, h, w), weight.reshape(-1, cin, *weight.shape[-2:]),
                       padding=self.pad, groups=b)
        return out.view(b, -1, h, w)


class PixelNorm(nn.Module):
    """StyleGAN's input normalisation of z to unit RMS per sample."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class StyleLayer(nn.Module):
    """Modulated conv + per-pixel noise (learned strength) + bias + leaky ReLU."""

    def __init__(self, cin: int, cout: int, style_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv(cin, cout, style_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        x = self.conv(x, style)
        if noise is not None:
            x = x + self.noise_strength * noise
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * math.sqrt(2)


@GENERATORS.register("stylegan", description="compact StyleGAN2: mapping MLP, W+ styles, modulated convs, noise, skip toRGB")
class StyleGANGenerator(Generator):
    """Noise inputs are drawn per call in training and fixed to zero for inversion (``eval``)."""

    mapping_layers = 4  # StyleGAN2 uses 8; 4 suffices for a 64-dim latent on small images

    def __init__(self, spec: GeneratorSpec) -> None:
        super().__init__()
        self.spec = spec
        c, h, w = spec.shape
        blocks, base = _layout(max(h, w))
        d = spec.latent_dim
        mapping: list[nn.Module] = [PixelNorm()]
        for _ in range(self.mapping_layers):
            linear = nn.Linear(d, d)
            nn.init.kaiming_normal_(linear.weight, a=0.2)  # keeps w at unit RMS through the leaky ReLUs
            nn.init.zeros_(linear.bias)
            mapping += [linear, nn.LeakyReLU(0.2)]
        self.mapping = nn.Sequential(*mapping)
        self.const = nn.Parameter(torch.randn(1, spec.width, base, base))
        chans = [spec.width] + [max(16, spec.width // 2 ** (i + 1)) for i in range(blocks)]
        self.layers = nn.ModuleList([StyleLayer(chans[0], chans[0], d)])
        self.to_rgb = nn.ModuleList([ModulatedConv(chans[0], c, d, kernel=1, demodulate=False)])
        for i in range(blocks):
            self.layers.append(StyleLayer(chans[i], chans[i + 1], d))
            self.layers.append(StyleLayer(chans[i + 1], chans[i + 1], d))
            self.to_rgb.append(ModulatedConv(chans[i + 1], c, d, kernel=1, demodulate=False))
        self.register_buffer("w_avg", torch.zeros(d))  # running mean of w (truncation / W+ start)

    @property
    def num_styles(self) -> int:
        return len(self.layers) + len(self.to_rgb)

    def to_search_space(self, z: torch.Tensor, space: str) -> torch.Tensor:
        if space == "z":
            return z
        if space == "w+":
            with torch.no_grad():
                return self.mapping(z)[:, None, :].repeat(1, self.num_styles, 1)
        raise GradleakError(f"unknown latent space {space!r}; choose one of: z, w+")

    def synthesize(self, latent: torch.Tensor, space: str) -> torch.Tensor:
        if space == "z":
            return self(latent)
        if space == "w+":
            return self.synthesis(latent)
        raise GradleakError(f"unknown latent space {space!r}; choose one of: z, w+")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.mapping(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.lerp_(w.mean(0), 0.01)
        return self.synthesis(w[:, None, :].expand(-1, self.num_styles, -1))

    def synthesis(self, styles: torch.Tensor) -> torch.Tensor:
        """Images from W+ styles ``B x num_styles x latent_dim``."""
        b = styles.shape[0]
        x = self.const.expand(b, -1, -1, -1)
        k = iter(range(self.num_styles))
        x = self.layers[0](x, styles[:, next(k)], self._noise(x))
        rgb = self.to_rgb[0](x, styles[:, next(k)])
        for i in range(1, len(self.layers), 2):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = self.layers[i](x, styles[:, next(k)], self._noise(x))
            x = self.layers[i + 1](x, styles[:, next(k)], self._noise(x))
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False) + self.to_rgb[(i + 1) // 2](x, styles[:, next(k)])
        return _crop(torch.sigmoid(rgb), *self.spec.shape[1:])

    def _noise(self, x: torch.Tensor) -> torch.Tensor | None:
        return torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) if self.training else None


def build_generator(spec: GeneratorSpec) -> Generator:
    """A freshly initialised generator for ``spec`` (validated)."""
    spec.validate()
    return GENERATORS.get(spec.arch)(spec)


class Discriminator(nn.Module):
    """DCGAN discriminator (strided convs, leaky ReLU, no BatchNorm so R1 and per-sample losses are simple)."""

    def __init__(self, shape: tuple[int, int, int], *, width: int = 64) -> None:
        super().__init__()
        c, h, w = shape
        layers: list[nn.Module] = []
        ch, side = c, max(h, w)
        out = max(16, width // 4)
        while side > 4:
            layers += [nn.Conv2d(ch, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            ch, out, side = out, min(width * 2, out * 2), side // 2
        self.body = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.body(torch.zeros(1, c, h, w)).numel()
        self.head = nn.Linear(flat, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1)).squeeze(1)
