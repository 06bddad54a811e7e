"""Image conversions shared by every data set, so all sets resize and gray-convert alike.

Resizing uses bilinear interpolation with antialiasing (``torch.nn.functional.interpolate``):
it is deterministic on CPU, never leaves [0, 1] by more than rounding (we clamp), and
antialiasing keeps downsampled images free of aliasing artefacts an attack could exploit.
Grayscale uses the Rec. 709 luminance weights, the same as ``skimage.color.rgb2gray``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ShapeError

LUMINANCE_WEIGHTS = (0.2125, 0.7154, 0.0721)  # Rec. 709, as skimage.color.rgb2gray


def check_image_size(image_size: object) -> int | None:
    """Validate a requested image side length (None means the set's native size)."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ShapeError(f"image_size must be a positive integer or None, got {image_size!r}")
    return image_size


def uint8_to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 ``N x H x W`` (gray) or ``N x H x W x 3`` (RGB) -> float32 ``N x C x H x W`` in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    if tensor.ndim == 3:
        return tensor.unsqueeze(1)
    return tensor.permute(0, 3, 1, 2).contiguous()


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """Reduce ``N x 3 x H x W`` to ``N x 1 x H x W`` luminance; one-channel input is returned as is."""
    channels = images.shape[1]
    if channels == 1:
        return images
    if channels != 3:
        raise ShapeError(f"grayscale needs 1 or 3 channels, got images of shape {tuple(images.shape)}")
    weights = torch.tensor(LUMINANCE_WEIGHTS, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True).clamp_(0.0, 1.0)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``N x C x H x W`` images to ``size x size`` (bilinear, antialiased, clamped to [0, 1])."""
    if tuple(images.shape[2:]) == (size, size):
        return images
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def finish_images(images: torch.Tensor, *, image_size: int | None, grayscale: bool) -> torch.Tensor:
    """Apply the user's grayscale and resize options (gray first: resizing one channel is cheaper)."""
    if grayscale:
        images = to_grayscale(images)
    if image_size is not None:
        images = resize_images(images, image_size)
    return images.contiguous()
