"""Metrics against independent references: numpy formulas, skimage SSIM, brute-force matching."""

from __future__ import annotations

import itertools
import json
import math
import warnings

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity as sk_ssim

import gradleak.metrics.image as image_mod
from gradleak.errors import GradleakError, ShapeError
from gradleak.metrics import (
    PSNR_CAP_DB,
    assign,
    evaluate_images,
    label_accuracy,
    label_count_accuracy,
    mse,
    psnr,
    ssim,
    ssim_window,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _smooth_images(b: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Images with structure (not pure noise), so SSIM is far from 0 and from 1."""
    g = _gen(seed)
    low = torch.rand(b, c, max(h // 4, 2), max(w // 4, 2), generator=g, dtype=torch.float64)
    up = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    return (up + 0.05 * torch.randn(b, c, h, w, generator=g, dtype=torch.float64)).clamp(0, 1)


def _noisy(x: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    return (x + sigma * torch.randn(x.shape, generator=_gen(seed), dtype=x.dtype)).clamp(0, 1)


# --- MSE / PSNR against a hand-written numpy formula -------------------------------------


def test_mse_psnr_match_numpy_reference() -> None:
    truth = _smooth_images(5, 3, 16, 16)
    recon = _noisy(truth, 0.1)
    a, b = recon.numpy(), truth.numpy()
    ref_mse = ((a - b) ** 2).reshape(5, -1).mean(axis=1)
    ref_psnr = 10 * np.log10(1.0 / ref_mse)
    got_mse, got_psnr = mse(recon, truth), psnr(recon, truth)
    np.testing.assert_allclose(got_mse.per_sample.numpy(), ref_mse, rtol=1e-12)
    np.testing.assert_allclose(got_psnr.per_sample.numpy(), ref_psnr, rtol=1e-12)
    assert got_psnr.mean == pytest.approx(ref_psnr.mean())  # mean of per-sample PSNR
    assert got_mse.mean == pytest.approx(ref_mse.mean())


def test_psnr_respects_data_range() -> None:
    truth = _smooth_images(3, 1, 12, 12)
    recon = _noisy(truth, 0.05)
    scaled = psnr(recon * 255, truth * 255, data_range=255.0).per_sample
    torch.testing.assert_close(scaled, psnr(recon, truth).per_sample)


def test_identical_images_give_capped_psnr_and_unit_ssim() -> None:
    x = _smooth_images(4, 1, 8, 8)
    assert psnr(x, x).per_sample.tolist() == [PSNR_CAP_DB] * 4
    torch.testing.assert_close(ssim(x, x).per_sample, torch.ones(4, dtype=torch.float64))
    assert mse(x, x).mean == 0.0


# --- SSIM against skimage -----------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_skimage(channels: int) -> None:
    truth = _smooth_images(3, channels, 32, 32)
    recon = _noisy(truth, 0.1)
    got = ssim(recon, truth).per_sample.numpy()
    ref = [
        sk_ssim(
            r.numpy() if channels == 3 else r[0].numpy(),
            t.numpy() if channels == 3 else t[0].numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=0 if channels == 3 else None,
        )
        for r, t in zip(recon, truth)
    ]
    assert 0.2 < min(ref) < max(ref) < 0.99  # a non-trivial comparison
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_ssim_small_digits_shrink_window_like_skimage() -> None:
    size, sigma = ssim_window(8, 8)
    assert (size, sigma) == (7, pytest.approx(1.5 * 7 / 11))
    assert ssim_window(28, 28) == (11, 1.5)
    assert ssim_window(5, 9)[0] == 5
    truth = _smooth_images(4, 1, 8, 8)
    recon = _noisy(truth, 0.1)
    ref = [
        sk_ssim(r[0].numpy(), t[0].numpy(), gaussian_weights=True, sigma=sigma,
                use_sample_covariance=False, data_range=1.0)
        for r, t in zip(recon, truth)
    ]  # skimage derives a 7-tap window from this sigma (truncate 3.5)
    np.testing.assert_allclose(ssim(recon, truth).per_sample.numpy(), ref, atol=1e-6)


def test_ssim_rejects_images_below_3x3() -> None:
    x = torch.rand(2, 1, 2, 8)
    with pytest.raises(ShapeError, match="2x8"):
        ssim(x, x)


# --- Hungarian assignment -------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5])
def test_assign_matches_brute_force(batch: int) -> None:
    g = _gen(batch)
    recon = torch.rand(batch, 1, 4, 4, generator=g)
    truth = torch.rand(batch, 1, 4, 4, generator=g)
    cost = ((recon[:, None] - truth[None]) ** 2).flatten(2).mean(-1).double()  # [recon, truth]
    best = min(
        sum(float(cost[p[i], i]) for i in range(batch))
        for p in itertools.permutations(range(batch))
    )
    perm = assign(recon, truth)
    assert sorted(perm.tolist()) == list(range(batch))
    assert sum(float(cost[perm[i], i]) for i in range(batch)) == pytest.approx(best, rel=1e-12)


def test_assign_undoes_a_shuffle_and_uses_each_truth_once() -> None:
    truth = _smooth_images(6, 1, 8, 8)
    shuffle = torch.tensor([3, 0, 5, 1, 4, 2])
    recon = truth[shuffle]
    perm = assign(recon, truth)
    torch.testing.assert_close(recon[perm], truth)
    # two reconstructions both closest to truth 0: greedy would reuse it, Hungarian cannot
    truth2 = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
    recon2 = torch.stack([torch.full((1, 4, 4), 0.1), torch.full((1, 4, 4), 0.2)])
    assert assign(recon2, truth2).tolist() == [0, 1]


def test_shape_mismatch_error_prints_both_shapes() -> None:
    with pytest.raises(ShapeError, match=r"\(3, 1, 8, 8\).*\(4, 1, 8, 8\)"):
        assign(torch.rand(3, 1, 8, 8), torch.rand(4, 1, 8, 8))
    with pytest.raises(ShapeError, match=r"\(2, 3, 8, 8\).*\(2, 1, 8, 8\)"):
        psnr(torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8))
    with pytest.raises(ShapeError, match="B x C x H x W"):
        mse(torch.rand(2, 64), torch.rand(2, 64))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("fn", [mse, psnr, ssim, assign])
def test_non_finite_input_rejected(fn, bad: float) -> None:
    x = torch.rand(2, 1, 8, 8)
    y = x.clone()
    y[1, 0, 3, 3] = bad
    with pytest.raises(GradleakError, match="NaN/Inf"):
        fn(y, x)
    with pytest.raises(GradleakError, match="truth contains 1 NaN/Inf"):
        fn(x, y)


def test_bad_data_range_rejected() -> None:
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(GradleakError, match="data_range"):
        psnr(x, x, data_range=0.0)


# --- labels -----------------------------------------------------------------------------------


def test_label_accuracy_follows_assignment() -> None:
    true = torch.tensor([0, 1, 2, 3])
    perm = torch.tensor([2, 0, 3, 1])  # recon[perm[i]] matched to truth[i]
    pred = torch.empty(4, dtype=torch.long)
    pred[perm] = true  # every matched label right
    assert label_accuracy(pred, true, perm) == 1.0
    assert label_accuracy(pred, true) == 0.0  # identity order is wrong here
    pred[perm[0]] = 9
    assert label_accuracy(pred, true, perm) == 0.75
    scores = torch.nn.functional.one_hot(pred.clamp(max=3), 4).float()  # 2-D scores -> argmax
    assert label_accuracy(scores, true, perm.tolist()) == 0.75


def test_label_count_accuracy_is_order_free_multiset_overlap() -> None:
    assert label_count_accuracy([3, 2, 1, 1], [1, 1, 2, 3]) == 1.0
    assert label_count_accuracy([1, 2, 2, 3], [1, 1, 2, 3]) == 0.75
    assert label_count_accuracy([5, 5], [1, 2]) == 0.0


def test_label_errors() -> None:
    with pytest.raises(ShapeError, match=r"\(3,\).*\(2,\)"):
        label_count_accuracy([1, 2, 3], [1, 2])
    with pytest.raises(ShapeError, match="permutation"):
        label_accuracy([1, 2], [1, 2], [0, 0])
    with pytest.raises(GradleakError, match="integer"):
        label_accuracy(torch.tensor([0.5, 1.0]), torch.tensor([0, 1]))


# --- evaluate_images -----------------------------------------------------------------------------


def test_evaluate_images_flat_jsonable_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_mod, "_lpips_warned", False)
    truth = _smooth_images(5, 1, 8, 8)
    shuffle = torch.tensor([4, 2, 0, 1, 3])
    recon = _noisy(truth, 0.02)[shuffle]
    labels = torch.tensor([0, 1, 2, 3, 4])
    with pytest.warns(RuntimeWarning, match="LPIPS"):
        out = evaluate_images(
            reconstruction=recon, truth=truth, recon_labels=labels[shuffle], true_labels=labels
        )
    assert json.loads(json.dumps(out)) == out
    assert set(out) == {
        "mse", "psnr", "ssim", "fsim", "lpips", "label_accuracy", "label_count_accuracy",
        "psnr_per_sample", "ssim_per_sample", "fsim_per_sample", "assignment",
    }
    assert out["lpips"] is None
    assert out["label_accuracy"] == 1.0 and out["label_count_accuracy"] == 1.0
    assert [shuffle[i].item() for i in out["assignment"]] == [0, 1, 2, 3, 4]
    aligned = recon[torch.tensor(out["assignment"])]
    assert out["psnr_per_sample"] == psnr(aligned, truth).per_sample.tolist()
    assert out["psnr"] == pytest.approx(sum(out["psnr_per_sample"]) / 5)
    assert out["psnr"] > 25 and 0.8 < out["ssim"] < 1
    assert all(isinstance(out[k], float) for k in ("mse", "psnr", "ssim"))
    assert all(isinstance(i, int) for i in out["assignment"])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per process, not on every call
        again = evaluate_images(reconstruction=truth, truth=truth)
    assert again["psnr"] == PSNR_CAP_DB and again["ssim"] == pytest.approx(1.0)
    assert again["label_accuracy"] is None and again["label_count_accuracy"] is None


def test_evaluate_images_uses_lpips_fn_when_given() -> None:
    truth = _smooth_images(3, 3, 16, 16)
    recon = _noisy(truth, 0.05)
    out = evaluate_images(
        reconstruction=recon, truth=truth, lpips_fn=lambda a, b: (a - b).abs().flatten(1).mean(1)
    )
    assert out["lpips"] == pytest.approx(float((recon - truth).abs().mean()))


def test_evaluate_images_rejects_nan_reconstruction() -> None:
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(GradleakError, match="reconstruction contains"):
        evaluate_images(reconstruction=torch.full_like(x, math.nan), truth=x)
