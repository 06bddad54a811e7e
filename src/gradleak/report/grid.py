"""Truth-vs-reconstruction grids drawn pixel for pixel, at a size a person can judge.

A 28 px medical image shown at 80 px hides whether an attack recovered it; this grid enlarges
every image by a whole factor (at least 4x, and at least ``min_tile`` px), nearest neighbour,
so each original pixel is a sharp square. The PNG's own size is the display size: the report
shows it unscaled (scrolling sideways inside its box on a narrow screen) rather than shrunk.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .plots import _atomic_write

MIN_SCALE = 4  # a 28 px image is drawn at least 112 px wide
MIN_TILE = 112  # smaller images get a larger factor (8 px digits: 14x)
GAP = 8
LINE = 18  # header line height


@dataclass(frozen=True)
class GridPicture:
    path: Path
    width: int  # pixels; the report shows the PNG at exactly this size
    height: int
    scale: int  # display pixels per image pixel
    image_size: int  # the images' own height in pixels


def grid_scale(height: int, *, min_scale: int = MIN_SCALE, min_tile: int = MIN_TILE) -> int:
    """Whole enlargement factor for an image ``height`` px tall."""
    return max(min_scale, math.ceil(min_tile / max(1, height)))


def _as_rgb(images: object) -> np.ndarray:
    """B x C x H x W in [0, 1] (tensor or array) -> B x H x W x 3 uint8."""
    array = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images, dtype=float)
    array = np.clip(np.nan_to_num(array), 0.0, 1.0).transpose(0, 2, 3, 1)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return (array[..., :3] * 255 + 0.5).astype(np.uint8)


def save_image_grid(columns: Mapping[str, object], path: str | os.PathLike[str], *, highlight: str | None = None,
                    notes: Mapping[str, str] | None = None, min_scale: int = MIN_SCALE,
                    min_tile: int = MIN_TILE) -> GridPicture:
    """One column per named image set (private first), one row per sample, enlarged by a whole factor.

    ``highlight``: the column framed in red (e.g. the attacker's pick); ``notes``: a second header
    line per column (e.g. whether that attack recovered anything, by the attacker's own score).
    """
    from PIL import Image, ImageDraw, ImageFont

    arrays = {name: _as_rgb(a) for name, a in columns.items()}
    rows = min((a.shape[0] for a in arrays.values()), default=0)
    height = max((a.shape[1] for a in arrays.values()), default=1)
    scale = grid_scale(height, min_scale=min_scale, min_tile=min_tile)
    tile = height * scale
    font = ImageFont.load_default(size=13)
    header = LINE * (2 if notes else 1) + 4
    width = GAP + len(arrays) * (tile + GAP)
    canvas = Image.new("RGB", (width, header + rows * (tile + GAP) + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    for c, (name, images) in enumerate(arrays.items()):
        x = GAP + c * (tile + GAP)
        chosen = name == highlight
        colour = (192, 57, 43) if chosen else (34, 34, 34)
        draw.text((x, 2), _fit(draw, name, font, tile), fill=colour, font=font)
        if notes and name in notes:
            draw.text((x, 2 + LINE), _fit(draw, notes[name], font, tile), fill=colour, font=font)
        for r in range(rows):
            y = header + GAP + r * (tile + GAP)
            image = Image.fromarray(images[r]).resize((images.shape[2] * scale, images.shape[1] * scale),
                                                      Image.Resampling.NEAREST)
            canvas.paste(image, (x, y))
            frame = 3 if chosen else 1
            draw.rectangle((x - frame, y - frame, x + image.width - 1 + frame, y + image.height - 1 + frame),
                           outline=colour if chosen else (190, 190, 190), width=frame)
    out = _atomic_write(path, lambda handle: canvas.save(handle, format="PNG", optimize=True))
    return GridPicture(path=Path(out), width=canvas.width, height=canvas.height, scale=scale, image_size=height)


def _fit(draw, text: str, font, width: int) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
