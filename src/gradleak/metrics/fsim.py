"""FSIM / FSIMc: Feature Similarity Index (Zhang, Zhang, Mou, Zhang, IEEE TIP 2011), in torch.

Why: the CI-Net paper reports FSIM next to SSIM; piq (the usual source) needs torchvision,
which is unusable here. This follows the authors' reference implementation (FeatureSIM.m with
Kovesi's phase congruency, ``phasecong2``):

* images on the 0..255 scale; RGB -> YIQ (Y for structure, I/Q for chroma in FSIMc);
* downsampling by ``F = max(1, round(min(H, W) / 256))`` (F x F average, keep every F-th pixel);
* phase congruency PC from log-Gabor filters, 4 scales (wavelengths 6, 12, 24, 48) x 4
  orientations, sigma_f 0.55, angular spread ratio 1.2, Butterworth low-pass (0.45, order 15),
  noise threshold from the median smallest-scale energy (k = 2, divided by 1.7);
* gradient magnitude by the Scharr operator ([3 10 3] / 16), zero padding;
* ``S_L = S_PC * S_G`` with T1 = 0.85, T2 = 160, weighted by ``PC_m = max(PC1, PC2)``;
  FSIMc multiplies by ``(S_I * S_Q) ** lambda`` with T3 = T4 = 200, lambda = 0.03.

Deviation (documented): when both images have no phase congruency anywhere (flat images, where
the reference divides 0 by 0), the similarity map is averaged unweighted instead, so identical
flat images score 1. For C = 3 the score is FSIMc unless ``chromatic=False``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from gradleak.errors import ShapeError

from .image import Scores, _check_images, _scores

N_SCALES, N_ORIENT = 4, 4
MIN_WAVELENGTH, MULT, SIGMA_ON_F, D_THETA_ON_SIGMA = 6.0, 2.0, 0.55, 1.2
NOISE_K, NOISE_RESCALE, PC_EPS = 2.0, 1.7, 1e-4
T1, T2, T3, T4, LAMBDA = 0.85, 160.0, 200.0, 200.0, 0.03
RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def _freq_grid(rows: int, cols: int, *, device: torch.device) -> tuple[Tensor, Tensor]:
    """Normalised radius and angle of every FFT bin (0 frequency at [0, 0]), as in phasecong2."""

    def axis(n: int) -> Tensor:
        if n % 2:
            return torch.arange(-(n - 1) / 2, (n - 1) / 2 + 1, device=device, dtype=torch.float64) / max(n - 1, 1)
        return torch.arange(-n / 2, n / 2, device=device, dtype=torch.float64) / n

    y, x = torch.meshgrid(axis(rows), axis(cols), indexing="ij")
    radius = torch.fft.ifftshift(torch.sqrt(x * x + y * y))
    theta = torch.fft.ifftshift(torch.atan2(-y, x))
    return radius, theta


def log_gabor_filters(rows: int, cols: int, *, device: torch.device) -> Tensor:
    """Frequency-domain filters, S x O x rows x cols (scale-major), real and non-negative."""
    radius, theta = _freq_grid(rows, cols, device=device)
    lowpass = 1.0 / (1.0 + (radius / 0.45) ** (2 * 15))
    radius = radius.clone()
    radius[0, 0] = 1.0  # avoid log(0); the DC bin is zeroed below
    radial = []
    for s in range(N_SCALES):
        fo = 1.0 / (MIN_WAVELENGTH * MULT**s)
        g = torch.exp(-(torch.log(radius / fo) ** 2) / (2 * math.log(SIGMA_ON_F) ** 2)) * lowpass
        g[0, 0] = 0.0
        radial.append(g)
    theta_sigma = math.pi / N_ORIENT / D_THETA_ON_SIGMA
    spread = []
    for o in range(N_ORIENT):
        angle = o * math.pi / N_ORIENT
        ds = torch.sin(theta) * math.cos(angle) - torch.cos(theta) * math.sin(angle)
        dc = torch.cos(theta) * math.cos(angle) + torch.sin(theta) * math.sin(angle)
        spread.append(torch.exp(-(torch.atan2(ds, dc).abs() ** 2) / (2 * theta_sigma**2)))
    return torch.stack(radial)[:, None] * torch.stack(spread)[None]


def phase_congruency(image: Tensor) -> Tensor:
    """Kovesi's phase congruency (the PC_2 measure of ``phasecong2``) of B x H x W images."""
    rows, cols = image.shape[-2:]
    filters = log_gabor_filters(rows, cols, device=image.device)  # S x O x H x W
    eo = torch.fft.ifft2(torch.fft.fft2(image)[:, None, None] * filters)  # B x S x O x H x W
    even, odd, amp = eo.real, eo.imag, eo.abs()
    sum_e, sum_o = even.sum(1), odd.sum(1)  # B x O x H x W
    x_energy = torch.sqrt(sum_e**2 + sum_o**2) + PC_EPS
    mean_e, mean_o = sum_e / x_energy, sum_o / x_energy
    energy = (even * mean_e[:, None] + odd * mean_o[:, None] - (even * mean_o[:, None] - odd * mean_e[:, None]).abs()).sum(1)
    # Noise: median energy^2 at the smallest scale -> Rayleigh mean -> threshold per orientation.
    median_e2n = torch.quantile((amp[:, 0] ** 2).flatten(2), 0.5, dim=-1)  # B x O
    mean_e2n = -median_e2n / math.log(0.5)
    em_n = (filters[0] ** 2).sum((-2, -1))  # O
    noise_power = mean_e2n / em_n
    spatial = torch.fft.ifft2(filters.to(torch.complex128)).real * math.sqrt(rows * cols)  # S x O x H x W
    sum_an2 = (spatial**2).sum((0, -2, -1))  # O
    cross = sum((spatial[i] * spatial[j]).sum((-2, -1)) for i in range(N_SCALES) for j in range(i + 1, N_SCALES))
    noise_energy2 = 2 * noise_power * sum_an2 + 4 * noise_power * cross
    tau = torch.sqrt(noise_energy2 / 2)
    threshold = (tau * math.sqrt(math.pi / 2) + NOISE_K * torch.sqrt((2 - math.pi / 2) * tau**2)) / NOISE_RESCALE
    energy = (energy - threshold[..., None, None]).clamp(min=0)
    return energy.sum(1) / (amp.sum((1, 2)) + PC_EPS)


def gradient_magnitude(image: Tensor) -> Tensor:
    """Scharr gradient magnitude of B x H x W images, zero padding ('same' convolution)."""
    dx = torch.tensor([[3.0, 0, -3], [10, 0, -10], [3, 0, -3]], dtype=image.dtype, device=image.device) / 16
    kernels = torch.stack([dx, dx.T])[:, None]
    g = F.conv2d(image[:, None], kernels, padding=1)
    return torch.sqrt((g**2).sum(1))


def _similarity(a: Tensor, b: Tensor, constant: float) -> Tensor:
    return (2 * a * b + constant) / (a * a + b * b + constant)


def _downsample(x: Tensor) -> Tensor:
    """Reference downsampling: F x F mean filter, then every F-th pixel (F from min side / 256)."""
    factor = max(1, math.floor(min(x.shape[-2:]) / 256 + 0.5))
    if factor == 1:
        return x
    pad = ((factor - 1) // 2, factor // 2)  # MATLAB conv2 'same' alignment of an even kernel
    padded = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.avg_pool2d(padded, factor, stride=1)[..., ::factor, ::factor]


def fsim_per_sample(reconstruction: Tensor, truth: Tensor, *, data_range: float = 1.0, chromatic: bool | None = None) -> Tensor:
    """Per-sample FSIM (C = 1) or FSIMc (C = 3, unless ``chromatic=False``) as a B tensor."""
    _check_images(reconstruction, truth, data_range)
    channels = reconstruction.shape[1]
    if channels not in (1, 3):
        raise ShapeError(f"FSIM needs 1 (grayscale) or 3 (RGB) channels, got {channels} in {tuple(reconstruction.shape)}")
    if chromatic and channels != 3:
        raise ShapeError(f"FSIMc needs RGB images, got {channels} channel(s)")
    chromatic = channels == 3 if chromatic is None else chromatic
    scale = 255.0 / float(data_range)
    a, b = reconstruction.detach().double() * scale, truth.detach().double() * scale
    if channels == 3:
        yiq = torch.tensor(RGB_TO_YIQ, dtype=torch.float64, device=a.device)
        a, b = torch.einsum("kc,bchw->bkhw", yiq, a), torch.einsum("kc,bchw->bkhw", yiq, b)
    a, b = _downsample(a), _downsample(b)
    if min(a.shape[-2:]) < 3:
        raise ShapeError(f"FSIM needs images of at least 3x3 pixels, got {tuple(reconstruction.shape[-2:])}")
    ya, yb = a[:, 0], b[:, 0]
    pc_a, pc_b = phase_congruency(ya), phase_congruency(yb)
    sim = _similarity(pc_a, pc_b, T1) * _similarity(gradient_magnitude(ya), gradient_magnitude(yb), T2)
    if chromatic:
        chroma = _similarity(a[:, 1], b[:, 1], T3) * _similarity(a[:, 2], b[:, 2], T4)
        # The reference takes real(chroma ** lambda): a negative product (opposite hues) gives
        # |chroma| ** lambda * cos(pi * lambda).
        power = chroma.abs() ** LAMBDA
        sim = sim * torch.where(chroma < 0, power * math.cos(math.pi * LAMBDA), power)
    weight = torch.maximum(pc_a, pc_b)
    total = weight.sum((-2, -1))
    weighted = (sim * weight).sum((-2, -1)) / total.clamp(min=1e-300)
    return torch.where(total > 0, weighted, sim.mean((-2, -1)))


def fsim(reconstruction: Tensor, truth: Tensor, *, data_range: float = 1.0, chromatic: bool | None = None) -> Scores:
    """Per-sample FSIM/FSIMc of aligned pairs in ``[0, data_range]`` and their mean (1 = identical)."""
    with torch.no_grad():
        return _scores(fsim_per_sample(reconstruction, truth, data_range=data_range, chromatic=chromatic))
