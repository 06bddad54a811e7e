"""The dataset contract shared by every data source.

A :class:`Dataset` holds the whole (small) data set in memory as tensors: image inputs are
float32 ``N x C x H x W`` in ``[0, 1]`` (compare and clamp with data range 1), labels are
int64 class indices. Everything downstream (client simulation, attacks, metrics) relies on
these two conventions only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ShapeError


@dataclass(frozen=True)
class Dataset:
    """An in-memory labelled data set."""

    name: str  # registry name, e.g. "histology" or "medmnist:breastmnist"
    inputs: torch.Tensor  # float32, N x C x H x W in [0, 1] for images
    labels: torch.Tensor  # int64, N
    class_names: tuple[str, ...]  # human-readable name of each class index
    source: str  # where the data comes from (one line, shown by `gradleak datasets`)
    kind: str = "image"  # "image" | "tabular" | "timeseries"
    data_range: float = 1.0  # max - min of valid inputs (metrics use it)
    meta: dict = field(default_factory=dict)  # JSON-able extras (patch size, thresholds...)

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.labels.shape[0]:
            raise ShapeError(
                f"dataset {self.name!r}: {self.inputs.shape[0]} inputs but {self.labels.shape[0]} labels"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape[1:])

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def sample_batch(
        self, batch_size: int, *, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw ``batch_size`` distinct samples; returns (inputs, labels, indices)."""
        if batch_size < 1 or batch_size > len(self):
            raise ShapeError(
                f"batch size {batch_size} is invalid for dataset {self.name!r} with {len(self)} samples"
            )
        idx = torch.randperm(len(self), generator=generator)[:batch_size]
        return self.inputs[idx].clone(), self.labels[idx].clone(), idx

    def without(self, indices: torch.Tensor) -> "Dataset":
        """The dataset minus ``indices`` (e.g. the server's own data, disjoint from a client's)."""
        keep = torch.ones(len(self), dtype=torch.bool)
        keep[indices] = False
        return Dataset(
            name=self.name,
            inputs=self.inputs[keep],
            labels=self.labels[keep],
            class_names=self.class_names,
            source=self.source,
            kind=self.kind,
            data_range=self.data_range,
            meta=dict(self.meta),
        )
