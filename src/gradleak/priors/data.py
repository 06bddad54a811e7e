"""The attacker's own data: disjoint from every batch a simulated client can hold.

A curious server trains its prior (or meta-learns one, GIML) on public data of the same kind,
never on the client's images. How that split is made depends on the data set:

* Sets with an official split (MedMNIST): clients draw from ``train`` (what
  :func:`gradleak.scenario.simulate` loads); the attacker uses ``val`` + ``test``.
* ``histology`` (one slide cut into half-overlapping patches): the attacker owns the right
  part of the slide, patches whose left edge is at ``x >= ATTACKER_FROM`` of the slide width;
  clients must not hold any patch that shares a pixel with it, so :func:`client_exclusion`
  lists every patch reaching past that line (the simulation draws from the rest).
* Other embedded sets without a split (faces, digits): a fixed, seeded ``ATTACKER_SHARE`` of
  the samples; clients are excluded from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..data import Dataset, load_dataset
from ..errors import DataError

if TYPE_CHECKING:
    from ..observation import Observation

ATTACKER_FROM = 0.6  # histology: the attacker's patches start at 60 % of the slide width (~40 % of patches)
ATTACKER_SHARE = 0.4  # other split-less sets: share of samples that are the attacker's
SPLIT_SEED = 1234  # fixed permutation seed: the same split for every run and user


@dataclass(frozen=True)
class AttackerData:
    """The attacker's training images and how they were chosen (recorded in the prior's JSON)."""

    data: Dataset
    rule: str  # human-readable description of the split
    client_exclusion: torch.Tensor | None  # indices (into the client's pool) clients never hold


def _histology_masks(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(attacker patches, patches sharing a pixel with the attacker's region) on the grid."""
    rows, cols = data.meta["grid"]
    stride, size = data.meta["stride"], data.meta["patch_size"]
    width = (cols - 1) * stride + size
    split_x = int(round(ATTACKER_FROM * width))
    x0 = (torch.arange(len(data)) % cols) * stride
    return x0 >= split_x, x0 + size > split_x


def attacker_data(
    name: str, *, data_root: str | None = None, image_size: int | None = None, grayscale: bool = False
) -> AttackerData:
    """The attacker's split of data set ``name`` (see the module docstring)."""
    pool = load_dataset(name, data_root=data_root, image_size=image_size, grayscale=grayscale, split="train")
    if pool.meta.get("split", "all") != "all":  # an official split exists
        parts = []
        for s in ("val", "test"):  # some sets (ihm-synthetic) ship only train + test
            try:
                parts.append(load_dataset(name, data_root=data_root, image_size=image_size, grayscale=grayscale,
                                          split=s))
            except DataError:
                continue
        if not parts:
            raise DataError(f"dataset {name!r} has an official split but neither 'val' nor 'test' for the attacker")
        data = Dataset(name=pool.name, inputs=torch.cat([p.inputs for p in parts]),
                       labels=torch.cat([p.labels for p in parts]), class_names=pool.class_names,
                       source=pool.source, kind=pool.kind, data_range=pool.data_range, meta=dict(pool.meta))
        used = " + ".join(str(p.meta.get("split")) for p in parts)
        return AttackerData(data, f"official {used} split(s) (clients draw from train)", None)
    if "grid" in pool.meta and "stride" in pool.meta:
        mine, touching = _histology_masks(pool)
        rule = (f"patches right of {ATTACKER_FROM:.0%} of the slide width; clients never hold a patch "
                f"sharing a pixel with them")
        return AttackerData(pool.without(torch.nonzero(~mine).flatten()), rule, torch.nonzero(touching).flatten())
    perm = torch.randperm(len(pool), generator=torch.Generator().manual_seed(SPLIT_SEED))
    mine = perm[: int(round(ATTACKER_SHARE * len(pool)))].sort().values
    keep = torch.ones(len(pool), dtype=torch.bool)
    keep[mine] = False
    rule = f"fixed {ATTACKER_SHARE:.0%} of the samples (permutation seed {SPLIT_SEED}); clients draw from the rest"
    if len(mine) < 1:
        raise DataError(f"dataset {name!r} is too small to give the attacker its own split")
    return AttackerData(pool.without(torch.nonzero(keep).flatten()), rule, mine)


def hold_out(images: torch.Tensor, *, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, held-out) images: the last ``fraction`` of the attacker's split, in data order.

    A contiguous tail rather than a random draw: histology patches overlap their grid
    neighbours, so a random held-out patch would share most of its pixels with training
    patches; in the tail (the bottom rows of the attacker's region) only the first held-out
    row overlaps training patches (by half a patch). Official splits (MedMNIST) are unaffected.
    """
    n = images.shape[0]
    k = int(round(fraction * n))
    if k and n - k < 2:
        raise DataError(f"holding out {fraction:.0%} of {n} images leaves fewer than 2 to train on")
    return images[: n - k], images[n - k:]


def attacker_images(observation: "Observation", *, data_root: str | None = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(images, labels, split rule) of the attacker's split of the observation's data set, at the
    observation's input shape (attacks that learn from the attacker's own data: GIML, latent-decoder)."""
    from ..errors import GradleakError

    name = observation.data.get("dataset")
    if not name:
        raise GradleakError("this attack needs the observation's dataset name (observation.data['dataset']) to use "
                            "the attacker's split")
    c, h, _w = observation.input_shape
    split = attacker_data(str(name), data_root=data_root, image_size=h, grayscale=False)
    if split.data.input_shape[0] != c:
        split = attacker_data(str(name), data_root=data_root, image_size=h, grayscale=True)
    if tuple(split.data.input_shape) != tuple(observation.input_shape):
        raise GradleakError(
            f"attacker's {name} images have shape {split.data.input_shape} but the observation's inputs are {observation.input_shape}"
        )
    return split.data.inputs, split.data.labels, split.rule
