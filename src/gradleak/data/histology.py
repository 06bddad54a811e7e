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

``histology-allred``: the same patches labelled by an Allred-style IHC score (Allred et al.,
Mod. Pathol. 1998), the 0-8 scale pathologists use to grade a stain: a proportion score for
the share of stained pixels (0: none, 1: < 1 %, 2: 1-10 %, 3: 10-33 %, 4: 33-67 %, 5: > 67 %)
plus an intensity score for their mean DAB density (0 when nothing is stained; 1 weak below
``INTENSITY_CUTS[0] = 0.08``, 2 moderate up to ``INTENSITY_CUTS[1] = 0.10``, 3 strong above;
the cuts sit near the 40th and 65th percentiles of the slide's stained-pixel DAB density). A
score of 1 cannot occur (proportion >= 1 implies intensity >= 1), so class 1 is always empty.
At 32 px the nine classes hold 157/0/42/67/49/73/187/221/165 patches. Why a second labelling:
with two classes every sample's error signal at the output is one number times the same
vector, and a batch's update then barely tells the samples apart (docs/cinet.md measures it);
CIFAR-10's ten classes, the setting of the large-batch papers, do not have that problem.
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
PROPORTION_CUTS = (1e-9, 0.01, 0.10, 1 / 3, 2 / 3)  # stained share -> Allred proportion score 0..5
INTENSITY_CUTS = (0.08, 0.10)  # mean DAB density of stained pixels -> weak / moderate / strong
ALLRED_NAMES = tuple(f"allred_{score}" for score in range(9))
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


def allred_scores(dab_patches: np.ndarray) -> np.ndarray:
    """Allred-style total score 0-8 (proportion 0-5 + intensity 0-3) per ``N x s x s`` DAB map."""
    stained = dab_patches > DAB_THRESHOLD
    proportion = np.digitize(stained.mean(axis=(1, 2)), PROPORTION_CUTS)
    count = stained.sum(axis=(1, 2))
    density = np.where(stained, dab_patches, 0.0).sum(axis=(1, 2)) / np.maximum(count, 1)
    intensity = np.where(count > 0, 1 + np.digitize(density, INTENSITY_CUTS), 0)
    return (proportion + intensity).astype(np.int64)


def _patches(request: LoadRequest, name: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(RGB patches, DAB patches, patch side, patches per grid row) of the slide at the requested size."""
    from skimage import data
    from skimage.color import rgb2hed

    size = DEFAULT_SIZE if request.image_size is None else request.image_size
    if size not in PATCH_SIZES:
        raise ShapeError(
            f"{name} image_size {size} is not supported; choose one of: {', '.join(map(str, PATCH_SIZES))}"
        )
    rgb = data.immunohistochemistry()
    side = (rgb.shape[0] - size) // (size // 2) + 1
    return cut_patches(rgb, size), cut_patches(rgb2hed(rgb)[..., 2], size), size, side


def _dataset(request: LoadRequest, *, name: str, rgb: np.ndarray, size: int, side: int, labels: np.ndarray,
             class_names: tuple[str, ...], meta: dict) -> Dataset:
    import skimage

    inputs = uint8_to_float(rgb)
    if request.grayscale:
        inputs = to_grayscale(inputs).contiguous()
    return Dataset(
        name=name, inputs=inputs, labels=torch.from_numpy(labels), class_names=class_names, source=SOURCE,
        meta={"patch_size": size, "stride": size // 2, "grid": [side, side], "order": "row-major from top-left",
              "dab_threshold": DAB_THRESHOLD, **meta, "split": "all", "skimage_version": skimage.__version__},
    )


@register_dataset("histology", shape=(3, DEFAULT_SIZE, DEFAULT_SIZE), classes=2, source=SOURCE)
def load_histology(request: LoadRequest) -> Dataset:
    """Cut the IHC slide into patches and label each by its DAB staining."""
    rgb, dab, size, side = _patches(request, "histology")
    fraction, labels = dab_labels(dab)
    return _dataset(request, name="histology", rgb=rgb, size=size, side=side, labels=labels, class_names=CLASS_NAMES, meta={
        "positive_fraction_cutoff": POSITIVE_FRACTION,
        "label_rule": "dab_positive if share of pixels with rgb2hed DAB > dab_threshold exceeds cutoff",
        "positive_rate": float(labels.mean()),
        "mean_stained_fraction": float(fraction.mean()),
    })


@register_dataset("histology-allred", shape=(3, DEFAULT_SIZE, DEFAULT_SIZE), classes=9,
                  source=SOURCE + ", labelled by an Allred-style 0-8 stain score")
def load_histology_allred(request: LoadRequest) -> Dataset:
    """The histology patches with a nine-class label: the Allred-style score of their DAB stain."""
    rgb, dab, size, side = _patches(request, "histology-allred")
    labels = allred_scores(dab)
    return _dataset(request, name="histology-allred", rgb=rgb, size=size, side=side, labels=labels, class_names=ALLRED_NAMES,
                    meta={
                        "proportion_cuts": list(PROPORTION_CUTS),
                        "intensity_cuts": list(INTENSITY_CUTS),
                        "label_rule": "Allred-style proportion score (0-5) + intensity score (0-3) of the DAB stain",
                        "class_counts": np.bincount(labels, minlength=len(ALLRED_NAMES)).tolist(),
                    })
