"""What each column of a record means: the contract between tabular data, attacks and metrics.

A health record is a float32 tensor: ``T x F`` for a time series (MIMIC-III: 48 hourly steps
x 76 columns) or ``F`` for a table row. The :class:`RecordSchema` says, per column, whether it
is continuous (standardised with the recorded mean/std), binary (0/1, e.g. observation masks)
or part of a one-hot group (a categorical variable). Attacks use it for their regularizers and
the final projection; metrics use it for per-feature accuracy. It travels inside
``Observation.data['schema']`` as JSON: it is public knowledge of the data format, not data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..errors import DataError

if TYPE_CHECKING:
    from .base import Dataset

COLUMN_KINDS = ("continuous", "binary", "categorical")


@dataclass(frozen=True)
class Feature:
    """One clinical variable: a continuous or binary column, or a one-hot group of columns."""

    name: str  # variable name, e.g. "Heart Rate" or "mask->pH"
    kind: str  # one of COLUMN_KINDS
    start: int  # first column of the variable in the record
    stop: int  # one past its last column (stop - start > 1 only for categorical)
    categories: tuple[str, ...] = ()  # category labels of a one-hot group, in column order


@dataclass(frozen=True)
class RecordSchema:
    """Column layout of a record plus the normalisation of its continuous columns."""

    features: tuple[Feature, ...]  # every variable, in column order, covering all columns
    time_steps: int | None = None  # T for time series (records are T x F); None for flat rows
    mean: tuple[float, ...] = ()  # per column: value subtracted before dividing by std (0 for non-continuous)
    std: tuple[float, ...] = ()  # per column: scale of standardisation (1 for non-continuous)
    column_names: tuple[str, ...] = field(default=())  # header of every column (one-hot as "var->cat")

    def __post_init__(self) -> None:
        position = 0
        for f in self.features:
            if f.kind not in COLUMN_KINDS:
                raise DataError(f"feature {f.name!r}: unknown kind {f.kind!r}; choose one of {', '.join(COLUMN_KINDS)}")
            if f.start != position or f.stop <= f.start:
                raise DataError(f"feature {f.name!r} covers columns {f.start}..{f.stop}, expected to start at {position}")
            if f.kind != "categorical" and f.stop - f.start != 1:
                raise DataError(f"feature {f.name!r} of kind {f.kind} must be one column")
            position = f.stop
        for name in ("mean", "std", "column_names"):
            values = getattr(self, name)
            if values and len(values) != position:
                raise DataError(f"schema {name} has {len(values)} entries for {position} columns")

    # ------------------------------------------------------------------ views
    @property
    def num_columns(self) -> int:
        return self.features[-1].stop if self.features else 0

    @property
    def record_shape(self) -> tuple[int, ...]:
        return (self.num_columns,) if self.time_steps is None else (self.time_steps, self.num_columns)

    def column_mask(self, *kinds: str) -> torch.Tensor:
        """Boolean vector over columns: True where the column's variable has one of ``kinds``."""
        mask = torch.zeros(self.num_columns, dtype=torch.bool)
        for f in self.features:
            if f.kind in kinds:
                mask[f.start:f.stop] = True
        return mask

    def groups(self) -> list[tuple[int, int]]:
        """(start, stop) of every one-hot group."""
        return [(f.start, f.stop) for f in self.features if f.kind == "categorical"]

    def denormalise(self, records: torch.Tensor) -> torch.Tensor:
        """Records in original units (continuous columns un-standardised)."""
        if not self.mean:
            return records
        mean = torch.tensor(self.mean, dtype=records.dtype, device=records.device)
        std = torch.tensor(self.std, dtype=records.dtype, device=records.device)
        return records * std + mean

    # --------------------------------------------------------------------- io
    def to_json(self) -> dict[str, Any]:
        return {
            "time_steps": self.time_steps,
            "features": [
                {"name": f.name, "kind": f.kind, "start": f.start, "stop": f.stop, "categories": list(f.categories)}
                for f in self.features
            ],
            "mean": list(self.mean),
            "std": list(self.std),
            "column_names": list(self.column_names),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RecordSchema":
        try:
            features = tuple(
                Feature(name=str(f["name"]), kind=str(f["kind"]), start=int(f["start"]), stop=int(f["stop"]),
                        categories=tuple(str(c) for c in f.get("categories", ())))
                for f in d["features"]
            )
            steps = d.get("time_steps")
            return cls(
                features=features,
                time_steps=None if steps is None else int(steps),
                mean=tuple(float(v) for v in d.get("mean", ())),
                std=tuple(float(v) for v in d.get("std", ())),
                column_names=tuple(str(v) for v in d.get("column_names", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed record schema ({exc.__class__.__name__}: {exc})") from None


def build_schema(
    columns: list[tuple[str, str, tuple[str, ...]]],
    *,
    time_steps: int | None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
) -> RecordSchema:
    """Schema from ``(name, kind, categories)`` triples laid out consecutively."""
    features, names, position = [], [], 0
    for name, kind, categories in columns:
        width = len(categories) if kind == "categorical" else 1
        features.append(Feature(name=name, kind=kind, start=position, stop=position + width, categories=categories))
        names += [f"{name}->{c}" for c in categories] if kind == "categorical" else [name]
        position += width
    return RecordSchema(
        features=tuple(features), time_steps=time_steps, mean=tuple(mean or ()), std=tuple(std or ()),
        column_names=tuple(names),
    )


def standardise(
    values: torch.Tensor, schema: RecordSchema, *, reference: torch.Tensor | None = None
) -> tuple[torch.Tensor, list[float], list[float]]:
    """Standardise continuous columns with statistics of ``reference`` (default: ``values``).

    Returns (standardised values, per-column mean, per-column std); non-continuous columns keep
    mean 0 and std 1. A constant column (std <= 1e-7) gets std 1: it standardises to 0 on the
    reference data as with the benchmark's normalizer (which floors std at 1e-7), but values of
    other splits stay finite instead of being blown up by 1e7.
    """
    ref = values if reference is None else reference
    flat = ref.reshape(-1, ref.shape[-1]).double()
    cont = schema.column_mask("continuous")
    mean = torch.where(cont, flat.mean(0), torch.zeros(flat.shape[1], dtype=torch.float64))
    std = flat.std(0) if flat.shape[0] > 1 else torch.ones(flat.shape[1], dtype=torch.float64)
    std = torch.where(cont & (std > 1e-7), std, torch.ones_like(std))
    out = ((values.double() - mean) / std).float()
    return out, mean.tolist(), std.tolist()


def parse_number(text: str, *, where: str, column: str) -> float:
    """A finite float from a CSV cell, or a DataError naming the file:line and the column."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: non-numeric value {text!r} for {column!r}") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: non-finite value {text!r} for {column!r}")
    return value


RECORD_KINDS = ("tabular", "timeseries")  # Dataset.kind values whose inputs are health records


def column_statistics(records: torch.Tensor) -> dict[str, list[float]]:
    """Per-column mean, std and range over rows (and time steps): the attacker's Gaussian prior
    and the box its own records span (tableak keeps continuous values inside it)."""
    flat = records.reshape(-1, records.shape[-1]).double()
    std = flat.std(0) if flat.shape[0] > 1 else torch.zeros(flat.shape[1], dtype=torch.float64)
    return {"mean": flat.mean(0).tolist(), "std": std.tolist(), "min": flat.min(0).values.tolist(),
            "max": flat.max(0).values.tolist()}


def typical_records(schema: RecordSchema, mean: Any, *, shape: tuple[int, ...]) -> torch.Tensor:
    """The blind guess of ``shape`` records: every record at the attacker's column means, each
    one-hot group at its most frequent category and each binary column rounded. What an attacker
    that ignores the update gets right is the baseline every record score is read against."""
    guess = torch.as_tensor(mean, dtype=torch.float32).clone()
    if guess.shape != (schema.num_columns,):
        raise DataError(f"the column means have {tuple(guess.shape)} entries, the schema {schema.num_columns} columns")
    for start, stop in schema.groups():
        guess[start:stop] = torch.nn.functional.one_hot(guess[start:stop].argmax(), stop - start).float()
    flags = schema.column_mask("binary")
    guess[flags] = (guess[flags] > 0.5).float()
    return guess.expand(shape).clone()


def public_knowledge(data: "Dataset", *, own: "Dataset") -> dict:
    """What a server knows about a record domain besides the update: the column layout and
    Gaussian statistics of its own records ``own`` (the attacker's split, never the clients').

    Empty for images. Goes into ``Observation.data`` (JSON).
    """
    if data.kind not in RECORD_KINDS:
        return {}
    return {"schema": data.meta["schema"], "prior": column_statistics(own.inputs)}
