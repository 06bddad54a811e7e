"""Pictures for reports: truth-vs-reconstruction image grids and loss curves.

Both writers are atomic (temp file in the target directory, then ``os.replace``), so a
crash never leaves a half-written PNG. The grid uses pillow for pixel-exact tiles; loss
plots use matplotlib's object API with the Agg canvas (no pyplot: no global backend
switch, no figure registry to leak, safe on headless machines and inside notebooks).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from gradleak.errors import GradleakError, ShapeError

GAP = 2
"""Pixels between tiles and around the grid."""
BLOCK_GAP = 8
"""Extra pixels between row blocks when a long batch wraps."""
BACKGROUND = 255


def _atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Write via a temp file next to ``path`` and rename it into place (parent must exist)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def _to_uint8(row: Tensor, *, rgb: bool) -> np.ndarray:
    """B x C x H x W in [0, 1] -> B x H x W (x 3) uint8; NaN shown black, range clipped."""
    data = torch.nan_to_num(row.detach().float().cpu(), nan=0.0).clamp(0.0, 1.0)
    if rgb and data.shape[1] == 1:
        data = data.expand(-1, 3, -1, -1)
    array = (data * 255.0).round().to(torch.uint8).numpy()
    return array.transpose(0, 2, 3, 1) if rgb else array[:, 0]


def tile_scale(height: int, width: int, *, scale: int, max_tile: int) -> int:
    """Nearest-neighbour factor: ``scale``, reduced so tiles stay within ``max_tile`` pixels.

    Small images (8x8 digits) get the full factor; large ones (224x224) are not blown up.
    """
    return max(1, min(scale, max_tile // max(height, width)))


def _check_rows(rows: Sequence[Tensor], row_labels: Sequence[str] | None) -> None:
    if len(rows) == 0:
        raise ShapeError("save_image_grid needs at least one row, got none")
    shapes = [tuple(r.shape) for r in rows]
    if any(len(s) != 4 or s[1] not in (1, 3) or s[0] == 0 for s in shapes):
        raise ShapeError(f"each row must be B x C x H x W with C in (1, 3) and B > 0, got {shapes}")
    if len({(s[0], s[2], s[3]) for s in shapes}) != 1:
        raise ShapeError(f"all rows need the same batch size and image size, got {shapes}")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ShapeError(f"got {len(row_labels)} row labels for {len(rows)} rows")


def save_image_grid(
    rows: Sequence[Tensor],
    path: str | os.PathLike[str],
    *,
    row_labels: Sequence[str] | None = None,
    scale: int = 4,
    max_tile: int = 128,
    max_columns: int = 16,
) -> Path:
    """Write a PNG with ``rows[0]`` (truth) above ``rows[1]`` (reconstruction), and so on.

    Each row is B x C x H x W in [0, 1]. A batch longer than ``max_columns`` wraps into
    blocks that keep the rows together, so truth ``i`` always sits above its reconstruction.
    Grayscale output when every row has one channel, RGB otherwise.
    """
    _check_rows(rows, row_labels)
    if scale < 1 or max_tile < 1 or max_columns < 1:
        raise GradleakError(
            f"scale, max_tile and max_columns must be >= 1, got {scale}, {max_tile}, {max_columns}"
        )
    batch, _, height, width = rows[0].shape
    rgb = any(r.shape[1] == 3 for r in rows)
    factor = tile_scale(height, width, scale=scale, max_tile=max_tile)
    tile_h, tile_w = height * factor, width * factor
    columns = min(batch, max_columns)
    blocks = math.ceil(batch / columns)

    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    label_w = 0
    if row_labels:
        label_w = math.ceil(max(probe.textlength(text, font=font) for text in row_labels)) + 2 * GAP
    block_h = len(rows) * tile_h + (len(rows) - 1) * GAP
    size = (
        label_w + 2 * GAP + columns * tile_w + (columns - 1) * GAP,
        2 * GAP + blocks * block_h + (blocks - 1) * BLOCK_GAP,
    )
    canvas = Image.new("RGB" if rgb else "L", size, color=(BACKGROUND,) * 3 if rgb else BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    text_fill = (0, 0, 0) if rgb else 0

    for r, row in enumerate(rows):
        pixels = _to_uint8(row, rgb=rgb)
        for b in range(batch):
            block, col = divmod(b, columns)
            top = GAP + block * (block_h + BLOCK_GAP) + r * (tile_h + GAP)
            left = label_w + GAP + col * (tile_w + GAP)
            tile = Image.fromarray(pixels[b]).resize((tile_w, tile_h), Image.Resampling.NEAREST)
            canvas.paste(tile, (left, top))
        if row_labels:
            for block in range(blocks):
                top = GAP + block * (block_h + BLOCK_GAP) + r * (tile_h + GAP)
                box = draw.textbbox((0, 0), row_labels[r], font=font)
                y = top + (tile_h - (box[3] - box[1])) // 2 - box[1]
                draw.text((GAP, y), row_labels[r], fill=text_fill, font=font)

    return _atomic_write(path, lambda handle: canvas.save(handle, format="PNG"))


def _clean_traces(traces: Sequence[Sequence[float]] | dict[str, Sequence[float]]) -> dict[str, np.ndarray]:
    """Named float arrays with Inf turned into NaN (gaps in the line, never a crash)."""
    named = dict(traces) if isinstance(traces, dict) else {f"restart {i}": t for i, t in enumerate(traces)}
    cleaned = {}
    for name, trace in named.items():
        values = np.asarray(trace, dtype=np.float64).reshape(-1)
        cleaned[str(name)] = np.where(np.isfinite(values), values, np.nan)
    return cleaned


def _chosen_name(names: list[str], chosen: int | str | None) -> str | None:
    if chosen is None:
        return None
    if isinstance(chosen, str):
        if chosen not in names:
            raise GradleakError(f"chosen trace {chosen!r} is not one of {names}")
        return chosen
    if not 0 <= chosen < len(names):
        raise GradleakError(f"chosen restart {chosen} out of range: valid are 0..{len(names) - 1}")
    return names[chosen]


def save_loss_plot(
    traces: Sequence[Sequence[float]] | dict[str, Sequence[float]],
    path: str | os.PathLike[str],
    *,
    title: str = "Reconstruction loss",
    log_y: bool = True,
    chosen: int | str | None = None,
    size: tuple[int, int] = (640, 400),
) -> Path:
    """Write a PNG of loss vs iteration: one line per restart, the ``chosen`` one highlighted.

    ``traces`` is a list (named "restart i") or a name -> trace dict; ``chosen`` is an index
    (or a dict key). NaN/Inf points become gaps. The y axis is logarithmic only when
    ``log_y`` and every finite value is positive; otherwise linear. ``size`` is in pixels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cleaned = _clean_traces(traces)
    highlight = _chosen_name(list(cleaned), chosen)
    dpi = 100
    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    finite = np.concatenate([v[~np.isnan(v)] for v in cleaned.values()] or [np.empty(0)])
    for name, values in cleaned.items():
        steps = np.arange(len(values))
        if name == highlight:
            ax.plot(steps, values, color="tab:red", linewidth=2.0, zorder=3, label=f"{name} (chosen)")
        else:
            color = "0.55" if highlight is not None else None  # grey out the rest
            ax.plot(steps, values, color=color, linewidth=0.8, alpha=0.7, label=name)
    if finite.size == 0:
        ax.text(0.5, 0.5, "no finite loss values", ha="center", va="center", transform=ax.transAxes)
    elif log_y and bool((finite > 0).all()):
        ax.set_yscale("log")
    if 0 < len(cleaned) <= 10:
        ax.legend(fontsize="small")
    ax.set(title=title, xlabel="iteration", ylabel="loss")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=dpi))
