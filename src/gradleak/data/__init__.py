"""Dataset registry: ``load_dataset(name, ...)`` and ``list_datasets()``.

Registered sets (each module registers itself in :data:`DATASETS`):

- ``histology``: DAB-positive/negative IHC patches from scikit-image (offline), 3 x 28 x 28.
- ``faces``: scikit-image LFW subset, face / non-face, 1 x 25 x 25 (offline).
- ``digits``: scikit-learn digits, 10 classes, 1 x 8 x 8 (offline).
- ``medmnist:<flag>``: official MedMNIST ``.npz`` files from a local folder.
- ``mimic3-ihm``: the MIMIC-III in-hospital-mortality benchmark files (``--data-root``), 48 x 76.
- ``ihm-synthetic``: SYNTHETIC stays written in that format and read back, 48 x 76.
- ``breast-cancer`` (scikit-learn WDBC, 30 columns) and ``csv`` (a user's table), flat rows.
- ``gbsg2``, ``actg175``, ``whas500``, ``flchain``: real clinical tables read from files that
  lifelines / scikit-survival ship (``gradleak[clinical]``), flat rows.

Names may be parametric: the text before ``':'`` is the registry key, the rest the variant.
Loading is deterministic: the same arguments give bit-identical tensors.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError, UnknownNameError
from ..validation import did_you_mean
from . import clinical, digits, faces, histology, ihm_synthetic, medmnist, mimic3, tabular  # noqa: F401  (modules register themselves)
from .base import Dataset
from .entry import DATASETS, SPLITS, DatasetEntry, LoadRequest, register_dataset
from .transforms import check_image_size, resize_images, to_grayscale

__all__ = [
    "DATASETS",
    "SPLITS",
    "Dataset",
    "DatasetEntry",
    "LoadRequest",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "resize_images",
    "to_grayscale",
]


def _display_names() -> list[str]:
    """Registry names as a user types them (parametric entries as ``key:<variant>``)."""
    return [f"{key}:<flag>" if DATASETS.get(key).variants else key for key in DATASETS.names()]


def _resolve(name: str) -> tuple[str, DatasetEntry, str | None]:
    """Split ``name`` into registry key and variant and check both, with errors listing choices."""
    if not isinstance(name, str):
        raise UnknownNameError(f"dataset name must be a string, got {name!r}")
    key, has_variant, variant = name.partition(":")
    if key not in DATASETS:
        parametric = [k for k in DATASETS.names() if DATASETS.get(k).variants]
        flags = "; ".join(f"{k} flags: {', '.join(DATASETS.get(k).variants)}" for k in parametric)
        suffix = f" ({flags})" if flags else ""
        hint = did_you_mean(key, DATASETS.names()) if has_variant else did_you_mean(name, DATASETS.names())
        raise UnknownNameError(f"unknown dataset {name!r}; choose one of: {', '.join(_display_names())}{suffix}{hint}")
    entry = DATASETS.get(key)
    if entry.variants:
        if variant not in entry.variants:
            shown = repr(variant) if has_variant else "(none given)"
            raise UnknownNameError(
                f"unknown {key} flag {shown} in {name!r}; choose one of: "
                + ", ".join(f"{key}:{v}" for v in entry.variants) + did_you_mean(variant, entry.variants)
            )
        return key, entry, variant
    if has_variant:
        raise UnknownNameError(f"dataset {key!r} takes no ':<variant>' suffix, got {name!r}; use {key!r}")
    return key, entry, None


def load_dataset(
    name: str,
    *,
    data_root: str | Path | None = None,
    image_size: int | None = None,
    grayscale: bool = False,
    split: str = "train",
) -> Dataset:
    """Load a registered data set as float32 ``N x C x H x W`` images in [0, 1] with int64 labels.

    ``image_size=None`` keeps the set's native size; ``grayscale`` reduces RGB to luminance;
    ``data_root`` is where downloaded files (MedMNIST) live. ``split`` is ``train`` (default),
    ``val``, ``test`` or ``all``; the embedded sets (histology, faces, digits) have no official
    split and always return every sample (their ``meta['split']`` says ``all``); hold data out
    with :meth:`Dataset.without`.
    """
    _, entry, variant = _resolve(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    request = LoadRequest(
        variant=variant,
        data_root=None if data_root is None else Path(data_root).expanduser(),
        image_size=check_image_size(image_size),
        grayscale=bool(grayscale),
        split=split,
    )
    return entry.load(request)


def list_datasets() -> list[dict]:
    """Describe every registry entry for ``gradleak datasets``; reads no data file.

    Keys: ``name`` (parametric entries as ``key:<flag>``), ``shape`` (C, H, W tuple; an item is a
    string such as ``"1|3"`` where it depends on the variant), ``classes`` (int or description), ``source`` (one line),
    ``variants`` (valid flags; empty for plain names).
    """
    rows = []
    for key, display in zip(DATASETS.names(), _display_names()):
        entry = DATASETS.get(key)
        rows.append(
            {
                "name": display,
                "shape": entry.shape,
                "classes": entry.classes,
                "source": entry.source,
                "variants": list(entry.variants),
            }
        )
    return rows
