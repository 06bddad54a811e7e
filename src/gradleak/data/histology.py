"""``histology``: DAB-positive vs DAB-negative patches of a real immunohistochemistry slide.

Source: ``skimage.data.immunohistochemistry()`` (512 x 512 RGB, ships with scikit-image, no
download): colonic glands where the FHL2 protein is revealed by DAB (brown), counterstained
with hematoxylin (blue). It is real stained tissue, so a reconstruction that leaks it leaks
the kind of image a hospital would protect.

Patches: square patches of side ``image_size`` (28 by default; 32 and 64 also) cut at native
resolution on a grid with stride ``image_size // 2`` (half-overlapping, so there are enough
patches: 35 x 35 = 1225 at 28 px, 31 x 31 = 961 at 32 px, 15 x 15 = 225 at 64 px), ordered
row-major from the top-left corner.

Label (what a pathologist reads on an IHC slide: is the tissue stained for the protein?):
colour deconvolution (``skimage.color.rgb2hed``, Ruifrok & Johnston 2001) separates the DAB
optical density of each pixel. A pixel is *DAB-stained* when its DAB density exceeds
``DAB_THRESHOLD = 0.03``; this value sits in the valley between the two modes of the
image's DAB histogram (unstained stroma/background near 0.0-0.02, stained epithelium around
0.05-0.12). A patch is ``dab_positive`` (label 1) when more than ``POSITIVE_FRACTION = 0.5``
of its pixels are DAB-stained (a majority-stained patch), else ``dab_negative`` (label 0).
Resulting share of positive patches: 63.2 % at 28 px, 61.7 % at 32 px, 60.9 % at 64 px.
The label is computed on the RGB patch before any grayscale conversion.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ShapeError
from .base import Dataset
from .entry import LoadRequest, register_dataset
from .transforms import to_grayscale, uint8_to_float

PATCH_SIZES = (28, 32, 64)  # supported image_size values (native-resolution patches)
DEFAULT_SIZE = 28
DAB_THRESHOLD = 0.03  # rgb2hed DAB density above which a pixel counts as stained
POSITIVE_FRACTION = 0.5  # a patch is positive when more than this share of pixels is stained
CLASS_NAMES = ("dab_negative", "dab_positive")
SOURCE = "scikit-image immunohistochemistry slide (FHL2/DAB, colonic glands), half-overlapping patches"


def cut_patches(image: np.ndarray, size: int) -> np.ndarray:
    """``H x W x ...`` -> ``N x size x size x ...`` patches with stride size // 2, row-major."""
    stride = size // 2
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size), axis=(0, 1))
    windows = windows[::stride, ::stride]  # rows x cols x ... x size x size
    rows, cols = windows.shape[:2]
    windows = np.moveaxis(windows, (-2, -1), (2, 3))  # rows x cols x size x size x ...
    return np.ascontiguousarray(windows.reshape(rows * cols, size, size, *image.shape[2:]))


def dab_labels(dab_patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-patch stained-pixel fraction and label (1 = dab_positive) from ``N x s x s`` DAB maps."""
    fraction = (dab_patches > DAB_THRESHOLD).mean(axis=(1, 2))
    return fraction, (fraction > POSITIVE_FRACTION).astype(np.int64)


@register_dataset("histology", shape=(3, DEFAULT_SIZE, DEFAULT_SIZE), classes=2, source=SOURCE)
def load_histology(request: LoadRequest) -> Dataset:
    """Cut the IHC slide into patches and label each by its DAB staining."""
    import skimage
    from skimage import data
    from skimage.color import rgb2hed

    size = DEFAULT_SIZE if request.image_size is None else request.image_size
    if size not in PATCH_SIZES:
        raise ShapeError(
            f"histology image_size {size} is not supported; choose one of: {', '.join(map(str, PATCH_SIZES))}"
        )
    rgb = data.immunohistochemistry()
    dab = rgb2hed(rgb)[..., 2]
    fraction, labels = dab_labels(cut_patches(dab, size))
    inputs = uint8_to_float(cut_patches(rgb, size))
    if request.grayscale:
        inputs = to_grayscale(inputs).contiguous()
    side = (rgb.shape[0] - size) // (size // 2) + 1
    return Dataset(
        name="histology",
        inputs=inputs,
        labels=torch.from_numpy(labels),
        class_names=CLASS_NAMES,
        source=SOURCE,
        meta={
            "patch_size": size,
            "stride": size // 2,
            "grid": [side, side],
            "order": "row-major from top-left",
            "dab_threshold": DAB_THRESHOLD,
            "positive_fraction_cutoff": POSITIVE_FRACTION,
            "label_rule": "dab_positive if share of pixels with rgb2hed DAB > dab_threshold exceeds cutoff",
            "positive_rate": float(labels.mean()),
            "mean_stained_fraction": float(fraction.mean()),
            "split": "all",
            "skimage_version": skimage.__version__,
        },
    )
