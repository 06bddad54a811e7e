"""Register your own model and image folder with gradleak (used by docs/tutorial.md).

    gradleak audit --plugin examples/own_model/hospital.py --dataset ward-images \\
        --data-root path/to/images --model ward-cnn --out runs/ward

The data set reads an image folder laid out one sub-folder per class
(``images/benign/*.png``, ``images/malignant/*.png``); the model is a small CNN with smooth
(sigmoid) activations, like many compact medical classifiers. Replace both with yours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from gradleak.data.base import Dataset
from gradleak.data.entry import LoadRequest, register_dataset
from gradleak.data.transforms import finish_images, uint8_to_float
from gradleak.errors import DataError
from gradleak.models.catalog import register_model
from gradleak.models.options import opt

SOURCE = "your image folder (--data-root DIR with one sub-folder of PNG/JPEG files per class)"
NATIVE_SIZE = 32  # every image is resized to this unless --image-size says otherwise


@register_dataset("ward-images", shape=(3, NATIVE_SIZE, NATIVE_SIZE), classes="one per sub-folder", source=SOURCE)
def load_ward_images(request: LoadRequest) -> Dataset:
    """Every image of DIR/<class>/*.png|jpg, RGB, resized, in [0, 1]; classes in sorted folder order."""
    root = request.data_root
    if root is None or not root.is_dir():
        raise DataError(f"ward-images needs --data-root DIR with one sub-folder per class, got {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    files = [(f, k) for k, c in enumerate(classes) for f in sorted((root / c).iterdir())
             if f.suffix.lower() in (".png", ".jpg", ".jpeg")]
    if len(classes) < 2 or not files:
        raise DataError(f"{root} needs at least two class sub-folders holding .png/.jpg images")
    size = request.image_size or NATIVE_SIZE
    pixels = []
    for path, _ in files:
        try:
            with Image.open(path) as image:  # pillow decodes pixels only: no code in an image file runs
                pixels.append(np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)))
        except OSError as exc:
            raise DataError(f"{path} is not a readable image ({exc.__class__.__name__})") from None
    inputs = finish_images(uint8_to_float(np.stack(pixels)), image_size=None, grayscale=request.grayscale)
    return Dataset(name="ward-images", inputs=inputs, labels=torch.tensor([k for _, k in files]),
                   class_names=tuple(classes), source=SOURCE, meta={"split": "all", "root": str(root)})


@dataclass(frozen=True)
class WardCNNOptions:
    width: int = opt(12, "channels of the first convolution (the second has twice as many)", minimum=1)


@register_model("ward-cnn", options_type=WardCNNOptions, description="example hospital CNN: 2 sigmoid convs + linear")
def build_ward_cnn(*, input_shape: tuple[int, ...], num_classes: int, options: WardCNNOptions) -> nn.Module:
    """Two stride-2 convolutions with sigmoid activations and a linear classifier."""
    c, h, w = input_shape
    k = options.width
    return nn.Sequential(
        nn.Conv2d(c, k, 5, stride=2, padding=2), nn.Sigmoid(),
        nn.Conv2d(k, 2 * k, 5, stride=2, padding=2), nn.Sigmoid(),
        nn.Flatten(), nn.Linear(2 * k * ((h + 3) // 4) * ((w + 3) // 4), num_classes),
    )
