"""FSIM/FSIMc: against a slow loop-by-loop numpy transcription of the reference algorithm,
hand-computed chroma values, and the properties a similarity index must have."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from gradleak.errors import GradleakError, ShapeError
from gradleak.metrics import evaluate_images
from gradleak.metrics.fsim import fsim, gradient_magnitude, phase_congruency


# ---------------------------------------------------------------- slow numpy reference
def _grid(n: int) -> np.ndarray:
    return (np.arange(-(n - 1) / 2, (n - 1) / 2 + 1) / (n - 1)) if n % 2 else (np.arange(-n / 2, n / 2) / n)


def _phasecong_np(im: np.ndarray) -> np.ndarray:
    rows, cols = im.shape
    x, y = np.meshgrid(_grid(cols), _grid(rows))
    radius = np.fft.ifftshift(np.sqrt(x**2 + y**2))
    theta = np.fft.ifftshift(np.arctan2(-y, x))
    lp = 1.0 / (1.0 + (radius / 0.45) ** 30)
    radius[0, 0] = 1
    log_gabor = []
    for s in range(4):
        fo = 1.0 / (6 * 2**s)
        g = np.exp(-(np.log(radius / fo)) ** 2 / (2 * np.log(0.55) ** 2)) * lp
        g[0, 0] = 0
        log_gabor.append(g)
    theta_sigma = np.pi / 4 / 1.2
    image_fft = np.fft.fft2(im)
    energy_all = np.zeros_like(im)
    an_all = np.zeros_like(im)
    for o in range(4):
        ang = o * np.pi / 4
        ds = np.sin(theta) * np.cos(ang) - np.cos(theta) * np.sin(ang)
        dc = np.cos(theta) * np.cos(ang) + np.sin(theta) * np.sin(ang)
        spread = np.exp(-np.abs(np.arctan2(ds, dc)) ** 2 / (2 * theta_sigma**2))
        sum_e = np.zeros_like(im)
        sum_o = np.zeros_like(im)
        sum_an = np.zeros_like(im)
        eo, ifft_filters = [], []
        for s in range(4):
            filt = log_gabor[s] * spread
            ifft_filters.append(np.real(np.fft.ifft2(filt)) * np.sqrt(rows * cols))
            e = np.fft.ifft2(image_fft * filt)
            eo.append(e)
            sum_an += np.abs(e)
            sum_e += e.real
            sum_o += e.imag
            if s == 0:
                em_n = np.sum(filt**2)
        x_energy = np.sqrt(sum_e**2 + sum_o**2) + 1e-4
        mean_e, mean_o = sum_e / x_energy, sum_o / x_energy
        energy = np.zeros_like(im)
        for e in eo:
            energy += e.real * mean_e + e.imag * mean_o - np.abs(e.real * mean_o - e.imag * mean_e)
        noise_power = (-np.median(np.abs(eo[0]) ** 2) / np.log(0.5)) / em_n
        est_an2 = sum(f**2 for f in ifft_filters).sum()
        est_aiaj = sum((ifft_filters[i] * ifft_filters[j]).sum() for i in range(4) for j in range(i + 1, 4))
        tau = np.sqrt((2 * noise_power * est_an2 + 4 * noise_power * est_aiaj) / 2)
        threshold = (tau * np.sqrt(np.pi / 2) + 2 * np.sqrt((2 - np.pi / 2) * tau**2)) / 1.7
        energy_all += np.maximum(energy - threshold, 0)
        an_all += sum_an
    return energy_all / (an_all + 1e-4)


def _matlab_downsample(x: np.ndarray) -> np.ndarray:
    """FeatureSIM.m: F = round(min side / 256) (half away from zero), conv2(x, F x F mean, 'same'),
    keep x(1:F:end, 1:F:end). MATLAB's 'same' is the full convolution from index floor(F/2)."""
    f = max(1, int(math.floor(min(x.shape) / 256 + 0.5)))
    if f == 1:
        return x
    full = convolve2d(x, np.ones((f, f)) / f**2, mode="full")
    same = full[f // 2: f // 2 + x.shape[0], f // 2: f // 2 + x.shape[1]]
    return same[::f, ::f]


def _fsim_np(ref: np.ndarray, dis: np.ndarray) -> tuple[float, float]:
    """(FSIM, FSIMc) of two H x W (x 3) images on the 0..255 scale, as FeatureSIM.m computes them."""
    if ref.ndim == 3:
        m = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
        a, b = ref @ m.T, dis @ m.T
        y1, y2, i1, i2, q1, q2 = a[..., 0], b[..., 0], a[..., 1], b[..., 1], a[..., 2], b[..., 2]
    else:
        y1, y2 = ref, dis
        i1 = i2 = q1 = q2 = np.ones_like(ref)
    y1, y2, i1, i2, q1, q2 = (_matlab_downsample(c) for c in (y1, y2, i1, i2, q1, q2))
    pc1, pc2 = _phasecong_np(y1), _phasecong_np(y2)
    dx = np.array([[3, 0, -3], [10, 0, -10], [3, 0, -3]]) / 16
    dy = np.array([[3, 10, 3], [0, 0, 0], [-3, -10, -3]]) / 16
    g1 = np.sqrt(convolve2d(y1, dx, mode="same") ** 2 + convolve2d(y1, dy, mode="same") ** 2)
    g2 = np.sqrt(convolve2d(y2, dx, mode="same") ** 2 + convolve2d(y2, dy, mode="same") ** 2)
    s_pc = (2 * pc1 * pc2 + 0.85) / (pc1**2 + pc2**2 + 0.85)
    s_g = (2 * g1 * g2 + 160) / (g1**2 + g2**2 + 160)
    pcm = np.maximum(pc1, pc2)
    f = np.sum(s_g * s_pc * pcm) / np.sum(pcm)
    s_i = (2 * i1 * i2 + 200) / (i1**2 + i2**2 + 200)
    s_q = (2 * q1 * q2 + 200) / (q1**2 + q2**2 + 200)
    fc = np.sum(s_g * s_pc * np.real((s_i * s_q).astype(complex) ** 0.03) * pcm) / np.sum(pcm)
    return float(f), float(fc)


# ---------------------------------------------------------------- helpers
def _texture(shape, seed=0):
    """Smooth random texture in [0, 1] (natural-image-like: low frequencies dominate)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((shape[0], shape[1], shape[2] // 4, shape[3] // 4), generator=g)
    x = torch.nn.functional.interpolate(x, size=shape[-2:], mode="bilinear", align_corners=False)
    return (x + 0.15 * torch.rand(shape, generator=g)).clamp(0, 1) / 1.0


def _blur(x, k):
    kernel = torch.ones(x.shape[1], 1, k, k, dtype=x.dtype) / (k * k)
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, [k // 2] * 4, mode="replicate"), kernel, groups=x.shape[1])


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("channels,size", [(1, 16), (3, 16), (1, 15)])
def test_matches_slow_numpy_reference(channels, size):
    truth = _texture((2, channels, size, size), seed=1)
    recon = (truth + 0.1 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    got = fsim(recon, truth).per_sample
    for i in range(2):
        a = (recon[i].permute(1, 2, 0).squeeze(-1).double().numpy() * 255)
        b = (truth[i].permute(1, 2, 0).squeeze(-1).double().numpy() * 255)
        f, fc = _fsim_np(a, b)
        assert got[i].item() == pytest.approx(fc if channels == 3 else f, abs=1e-9)
    if channels == 3:  # luminance-only FSIM on demand
        f, _ = _fsim_np(recon[0].permute(1, 2, 0).double().numpy() * 255, truth[0].permute(1, 2, 0).double().numpy() * 255)
        assert fsim(recon[:1], truth[:1], chromatic=False).mean == pytest.approx(f, abs=1e-9)


@pytest.mark.parametrize("channels", [1, 3])
def test_identical_images_score_one(channels):
    x = _texture((3, channels, 16, 16))
    assert fsim(x, x).per_sample.tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)
    flat = torch.full((1, channels, 8, 8), 0.3)
    assert fsim(flat, flat).mean == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_monotone_in_noise_and_blur(channels):
    truth = _texture((1, channels, 32, 32), seed=3)
    noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(4))
    by_noise = [fsim((truth + s * noise).clamp(0, 1), truth).mean for s in (0.0, 0.03, 0.1, 0.3)]
    by_blur = [fsim(_blur(truth, k), truth).mean for k in (1, 3, 5, 9)]
    assert by_noise == sorted(by_noise, reverse=True) and by_noise[-1] < by_noise[0] - 0.05
    assert by_blur == sorted(by_blur, reverse=True) and by_blur[-1] < by_blur[0] - 0.02


def test_chroma_term_hand_computed():
    """Same luminance, constant zero-luminance hue offsets: FSIMc = (S_I * S_Q) ** 0.03 exactly."""
    gray = _texture((1, 1, 16, 16), seed=5).repeat(1, 3, 1, 1) * 0.5 + 0.25
    c1 = torch.tensor([0.10, -0.03, -0.11])  # Y offset 0.299*0.10 - 0.587*0.03 - 0.114*0.11 ~ 0
    c1[2] = -(0.299 * c1[0] + 0.587 * c1[1]) / 0.114
    c2 = -0.5 * c1
    a, b = gray + c1.view(1, 3, 1, 1), gray + c2.view(1, 3, 1, 1)
    yiq = torch.tensor([[0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
    i1, q1 = (yiq @ c1.double() * 255).tolist()
    i2, q2 = (yiq @ c2.double() * 255).tolist()
    s = (2 * i1 * i2 + 200) / (i1**2 + i2**2 + 200) * (2 * q1 * q2 + 200) / (q1**2 + q2**2 + 200)
    expected = abs(s) ** 0.03 * (math.cos(math.pi * 0.03) if s < 0 else 1.0)
    assert fsim(a, b).mean == pytest.approx(expected, abs=1e-6)
    assert fsim(a, b, chromatic=False).mean == pytest.approx(1.0, abs=1e-6)


def test_data_range_scaling():
    truth = _texture((1, 1, 16, 16), seed=6)
    recon = (truth + 0.05).clamp(0, 1)
    assert fsim(recon * 255, truth * 255, data_range=255).mean == pytest.approx(fsim(recon, truth).mean, abs=1e-7)


@pytest.mark.parametrize("channels", [1, 3])
def test_downsampling_large_images_matches_reference(channels):
    """Min side 384 (non-square 384 x 390) -> F = round(1.5) = 2: mean filter, every 2nd pixel."""
    truth = _texture((1, channels, 384, 390), seed=7)
    recon = _blur(truth, 3)
    assert fsim(truth, truth).mean == pytest.approx(1.0, abs=1e-12)
    f, fc = _fsim_np(recon[0].permute(1, 2, 0).squeeze(-1).double().numpy() * 255,
                     truth[0].permute(1, 2, 0).squeeze(-1).double().numpy() * 255)
    assert fsim(recon, truth).mean == pytest.approx(fc if channels == 3 else f, abs=1e-9)
    assert 0.5 < f < 1.0


def test_scharr_gradient_magnitude_of_a_ramp_hand_computed():
    """Interior of the ramp I(x, y) = 3x + 4y: Scharr weights 3 + 10 + 3 over a 2-pixel
    difference, / 16, give d/dx = 2 * 3 and d/dy = 2 * 4, so |grad| = 2 * 5 = 10."""
    yy, xx = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    g = gradient_magnitude((3 * xx + 4 * yy)[None].double())
    torch.testing.assert_close(g[0, 1:-1, 1:-1], torch.full((7, 7), 10.0, dtype=torch.float64))


def test_phase_congruency_peaks_on_a_step_edge_and_ignores_contrast():
    """Kovesi's defining property: PC is highest where all Fourier components are in phase (the
    step edge, and its periodic copy at the border) and it is dimensionless, so scaling the
    contrast leaves it unchanged."""
    step = torch.zeros(1, 32, 256, dtype=torch.float64)
    step[..., 128:] = 100.0
    step += torch.randn(step.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    column = phase_congruency(step)[0].mean(0)
    assert set(column.topk(4).indices.tolist()) == {0, 127, 128, 255}
    assert float(column[[127, 128]].min()) > 0.75 and float(column[16:112].mean()) < 0.4
    texture = _texture((1, 1, 32, 32), seed=9)[:, 0].double() * 255
    torch.testing.assert_close(phase_congruency(0.25 * texture), phase_congruency(texture), atol=1e-5, rtol=0)
