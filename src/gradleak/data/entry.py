"""Registry entries for data sets: what `load_dataset` dispatches on and `list_datasets` shows.

Each data module registers one :class:`DatasetEntry` under a short key (``histology``,
``medmnist``...). Keeping the static description (shape, classes, source) next to the loader
lets ``gradleak datasets`` describe every set without reading any data file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..registry import Registry
from .base import Dataset

SPLITS = ("train", "val", "test", "all")  # accepted values of load_dataset(split=...)


@dataclass(frozen=True)
class LoadRequest:
    """The validated arguments of one `load_dataset` call, handed to an entry's loader."""

    variant: str | None  # text after ':' in a parametric name (e.g. a MedMNIST flag), else None
    data_root: Path | None  # user-given folder holding downloaded files; None = the set's default
    image_size: int | None  # requested side length in pixels; None = the set's native default
    grayscale: bool  # reduce RGB to one luminance channel
    split: str  # one of SPLITS; sets without an official split return everything


Loader = Callable[[LoadRequest], Dataset]


@dataclass(frozen=True)
class DatasetEntry:
    """A registered data set: its loader plus a description that needs no data file."""

    load: Loader
    shape: tuple[int | str, ...]  # C, H, W of the default; an item is a string ("1|3") where it varies
    classes: int | str  # number of classes, or a description when it depends on the variant
    source: str  # one line: where the data comes from
    variants: tuple[str, ...] = ()  # valid ':<variant>' suffixes; empty = name takes no suffix


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(
    name: str,
    *,
    shape: tuple[int | str, ...],
    classes: int | str,
    source: str,
    variants: tuple[str, ...] = (),
) -> Callable[[Loader], Loader]:
    """Decorator registering a loader function under ``name`` with its static description."""

    def decorator(load: Loader) -> Loader:
        entry = DatasetEntry(load=load, shape=shape, classes=classes, source=source, variants=variants)
        DATASETS.register(name, description=source)(entry)
        return load

    return decorator
