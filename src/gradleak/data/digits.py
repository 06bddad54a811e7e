"""``digits``: scikit-learn's handwritten digits, 1797 images of 8 x 8, ten classes.

Source: ``sklearn.datasets.load_digits`` (ships with scikit-learn, no download). Pixel values
0..16 are divided by 16 to land in [0, 1]. Tiny and fast: the smoke test of every attack.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import Dataset
from .entry import LoadRequest, register_dataset
from .transforms import finish_images

NATIVE_SIZE = 8
MAX_VALUE = 16.0  # load_digits pixel values are integers 0..16
CLASS_NAMES = tuple(str(d) for d in range(10))
SOURCE = "scikit-learn load_digits: 1797 handwritten digits, 8x8 grayscale"


@register_dataset("digits", shape=(1, NATIVE_SIZE, NATIVE_SIZE), classes=10, source=SOURCE)
def load_digits(request: LoadRequest) -> Dataset:
    """Load all 1797 digits scaled to [0, 1]; optional resize."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / MAX_VALUE).unsqueeze(1)
    inputs = finish_images(images, image_size=request.image_size, grayscale=request.grayscale)
    return Dataset(
        name="digits",
        inputs=inputs,
        labels=torch.from_numpy(np.asarray(bunch.target, dtype=np.int64)),
        class_names=CLASS_NAMES,
        source=SOURCE,
        meta={"native_size": NATIVE_SIZE, "split": "all"},
    )
