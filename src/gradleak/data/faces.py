"""``faces``: the LFW subset shipped with scikit-image, face vs non-face, 25 x 25 grayscale.

Source: ``skimage.data.lfw_subset()`` (no download): 200 images; per its docstring the first
100 are faces cropped from Labeled Faces in the Wild and the last 100 are non-face background
crops of the same photos. The docstring says uint8, but scikit-image 0.26 returns float64 in
[0, 1]; both are accepted (uint8 is divided by 255). Faces are the canonical "obviously private" image in
the gradient-inversion literature, so leaks are easy to judge by eye.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError
from .base import Dataset
from .entry import LoadRequest, register_dataset
from .transforms import finish_images, uint8_to_float

NATIVE_SIZE = 25
NUM_FACES = 100  # the first 100 images are faces
CLASS_NAMES = ("non_face", "face")
SOURCE = "scikit-image lfw_subset: 100 LFW faces + 100 background crops, 25x25 grayscale"


def _as_unit_float(images: np.ndarray) -> torch.Tensor:
    """lfw_subset images (uint8, or float already in [0, 1]) -> float32 N x 1 x H x W."""
    if images.dtype == np.uint8:
        return uint8_to_float(images)
    if not np.issubdtype(images.dtype, np.floating) or images.min() < 0.0 or images.max() > 1.0:
        raise DataError(
            f"skimage lfw_subset returned {images.dtype} values in [{images.min()}, {images.max()}], "
            "expected uint8 or floats in [0, 1]"
        )
    return torch.from_numpy(images.astype(np.float32)).unsqueeze(1)


@register_dataset("faces", shape=(1, NATIVE_SIZE, NATIVE_SIZE), classes=2, source=SOURCE)
def load_faces(request: LoadRequest) -> Dataset:
    """Load the 200 images; label 1 = face; optional resize."""
    from skimage import data

    images = data.lfw_subset()
    labels = torch.zeros(images.shape[0], dtype=torch.int64)
    labels[:NUM_FACES] = 1
    inputs = finish_images(_as_unit_float(images), image_size=request.image_size, grayscale=request.grayscale)
    return Dataset(
        name="faces",
        inputs=inputs,
        labels=labels,
        class_names=CLASS_NAMES,
        source=SOURCE,
        meta={"native_size": NATIVE_SIZE, "split": "all"},
    )
