"""Report pictures: valid PNGs of the expected pixel size, written atomically."""

from __future__ import annotations

import math
import os

import pytest
import torch
from PIL import Image

from gradleak.errors import GradleakError, ShapeError
from gradleak.report import save_image_grid, save_loss_plot
from gradleak.report.plots import BLOCK_GAP, GAP


def _expected_size(batch: int, n_rows: int, tile: int, columns: int = 16) -> tuple[int, int]:
    cols = min(batch, columns)
    blocks = math.ceil(batch / cols)
    block_h = n_rows * tile + (n_rows - 1) * GAP
    return (2 * GAP + cols * tile + (cols - 1) * GAP, 2 * GAP + blocks * block_h + (blocks - 1) * BLOCK_GAP)


def _open(path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG"
        return img


def test_grayscale_digits_are_upscaled_nearest(tmp_path) -> None:
    truth = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    recon = 1 - truth
    path = save_image_grid([truth, recon], tmp_path / "reconstruction.png")
    img = _open(path)
    assert img.mode == "L" and img.size == _expected_size(4, 2, 32)
    # top-left tile is truth[0], each pixel a 4x4 block; the tile below is the reconstruction
    want = round(float(truth[0, 0, 0, 0]) * 255)
    assert {img.getpixel((GAP + dx, GAP + dy)) for dx in range(4) for dy in range(4)} == {want}
    assert img.getpixel((GAP, GAP + 32 + GAP)) == round(float(recon[0, 0, 0, 0]) * 255)
    assert [p.name for p in tmp_path.iterdir()] == ["reconstruction.png"]  # no temp left


def test_rgb_rows_and_large_images_not_blown_up(tmp_path) -> None:
    rows = [torch.rand(3, 3, 64, 64), torch.rand(3, 1, 64, 64)]  # mixed -> RGB
    img = _open(save_image_grid(rows, tmp_path / "rgb.png"))
    assert img.mode == "RGB" and img.size == _expected_size(3, 2, 128)  # scale capped at 2
    big = _open(save_image_grid([torch.rand(2, 3, 224, 224)], tmp_path / "big.png", scale=4))
    assert big.size == _expected_size(2, 1, 224)


def test_long_batch_wraps_keeping_rows_together(tmp_path) -> None:
    truth = torch.zeros(40, 1, 8, 8)
    recon = torch.ones(40, 1, 8, 8)
    img = _open(save_image_grid([truth, recon], tmp_path / "wrap.png", scale=2))
    assert img.size == _expected_size(40, 2, 16)  # 3 blocks of 16 columns
    second_block_top = GAP + 2 * 16 + GAP + BLOCK_GAP
    assert img.getpixel((GAP, second_block_top)) == 0  # truth row again above ...
    assert img.getpixel((GAP, second_block_top + 16 + GAP)) == 255  # ... its reconstruction


def test_row_labels_add_a_left_margin(tmp_path) -> None:
    rows = [torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)]
    img = _open(save_image_grid(rows, tmp_path / "l.png", row_labels=["truth", "reconstruction"]))
    width, height = _expected_size(2, 2, 32)
    assert img.size[1] == height and img.size[0] > width + 20


def test_grid_tolerates_nan_and_out_of_range(tmp_path) -> None:
    x = torch.tensor([math.nan, -1.0, 2.0, 0.5]).reshape(1, 1, 2, 2).expand(1, 1, 2, 2)
    img = _open(save_image_grid([x], tmp_path / "n.png", scale=1))
    assert [img.getpixel((GAP + i % 2, GAP + i // 2)) for i in range(4)] == [0, 0, 255, 128]


def test_grid_input_errors(tmp_path) -> None:
    with pytest.raises(ShapeError, match=r"\(2, 1, 8, 8\).*\(3, 1, 8, 8\)"):
        save_image_grid([torch.rand(2, 1, 8, 8), torch.rand(3, 1, 8, 8)], tmp_path / "x.png")
    with pytest.raises(ShapeError, match="C in"):
        save_image_grid([torch.rand(2, 2, 8, 8)], tmp_path / "x.png")
    with pytest.raises(ShapeError, match="labels"):
        save_image_grid([torch.rand(2, 1, 8, 8)], tmp_path / "x.png", row_labels=["a", "b"])
    assert list(tmp_path.iterdir()) == []


def test_loss_plot_with_chosen_restart_and_nan(tmp_path) -> None:
    traces = [[1.0, 0.5, math.nan, 0.1, 0.05], [2.0, math.inf, 0.5, 0.4, 0.3], []]
    img = _open(save_loss_plot(traces, tmp_path / "loss.png", chosen=0))
    assert img.size == (640, 400)
    named = {"cosine": [0.0, -0.1, 0.2], "l2": [math.nan]}  # non-positive -> linear axis
    assert _open(save_loss_plot(named, tmp_path / "n.png", chosen="l2", size=(300, 200))).size == (300, 200)
    assert _open(save_loss_plot([[math.nan] * 3], tmp_path / "all_nan.png")).size == (640, 400)
    assert sorted(os.listdir(tmp_path)) == ["all_nan.png", "loss.png", "n.png"]


def test_loss_plot_bad_chosen_names_choices(tmp_path) -> None:
    with pytest.raises(GradleakError, match="0..1"):
        save_loss_plot([[1.0], [2.0]], tmp_path / "x.png", chosen=2)
    with pytest.raises(GradleakError, match="'b'"):
        save_loss_plot({"a": [1.0]}, tmp_path / "x.png", chosen="b")
