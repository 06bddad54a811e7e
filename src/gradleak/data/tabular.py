"""Flat tables: scikit-learn's breast-cancer (WDBC) and any CSV with declared column types.

Rows are float32 vectors: continuous columns standardised with the train part's mean/std
(recorded in the schema, so results can be read back in original units), binary columns 0/1,
categorical columns one-hot. Neither source has an official split, so a seeded 80/20 split
gives ``train`` (the clients' data) and ``test`` (e.g. the attacker's own data for tuning).

A CSV set is a folder given as ``--data-root`` holding ``data.csv`` (header row, one record per
line) and ``columns.json``::

    {"label": "outcome", "columns": {"age": "continuous", "smoker": "binary", "stage": "categorical"}}

Every CSV column except the label must be declared; problems name the file and line.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .base import Dataset
from .entry import LoadRequest, register_dataset
from .schema import COLUMN_KINDS, build_schema, parse_number, standardise

SPLIT_SEED = 0  # seed of the fixed 80/20 train/test split
TRAIN_FRACTION = 0.8  # share of rows in the train split


def _split_indices(n: int, split: str, *, name: str) -> np.ndarray:
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    cut = int(round(TRAIN_FRACTION * n))
    parts = {"train": order[:cut], "test": order[cut:], "all": np.arange(n)}
    if split not in parts:
        raise DataError(f"{name}: split {split!r} is not available; choose train, test or all")
    return np.sort(parts[split])


def make_table(
    *, name: str, values: np.ndarray, labels: np.ndarray, columns: list[tuple[str, str, tuple[str, ...]]],
    class_names: tuple[str, ...], source: str, split: str,
) -> Dataset:
    """Standardise with the train part's statistics and pack the chosen split."""
    schema = build_schema(columns, time_steps=None)
    x = torch.from_numpy(np.asarray(values, dtype=np.float32))
    train = torch.from_numpy(_split_indices(len(x), "train", name=name))
    chosen = torch.from_numpy(_split_indices(len(x), split, name=name))
    inputs, mean, std = standardise(x[chosen], schema, reference=x[train])
    schema = build_schema(columns, time_steps=None, mean=mean, std=std)
    return Dataset(
        name=name, inputs=inputs, labels=torch.from_numpy(np.asarray(labels, dtype=np.int64))[chosen],
        class_names=class_names, source=source, kind="tabular", data_range=1.0,
        meta={"schema": schema.to_json(), "split": split},
    )


BREAST_SOURCE = "scikit-learn load_breast_cancer (WDBC): 569 tumours x 30 continuous features"


@register_dataset("breast-cancer", shape=(30,), classes=2, source=BREAST_SOURCE)
def load_breast_cancer(request: LoadRequest) -> Dataset:
    """WDBC: 30 continuous cell-nucleus measurements, malignant vs benign."""
    from sklearn.datasets import load_breast_cancer as sklearn_load

    bunch = sklearn_load()
    columns = [(str(c), "continuous", ()) for c in bunch.feature_names]
    return make_table(name="breast-cancer", values=bunch.data, labels=bunch.target, columns=columns,
                      class_names=tuple(str(c) for c in bunch.target_names), source=BREAST_SOURCE,
                      split=request.split)


CSV_SOURCE = "your CSV: --data-root DIR with data.csv and columns.json (declared column types)"


def _read_declaration(path: Path) -> tuple[str, dict[str, str]]:
    if not path.is_file():
        raise DataError(f"{path}: missing column declaration (columns.json with 'label' and 'columns')")
    try:
        decl = json.loads(path.read_text())
        label, kinds = str(decl["label"]), {str(k): str(v) for k, v in dict(decl["columns"]).items()}
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a valid column declaration ({exc.__class__.__name__})") from None
    for column, kind in kinds.items():
        if kind not in COLUMN_KINDS:
            raise DataError(f"{path}: column {column!r} has kind {kind!r}; choose one of {', '.join(COLUMN_KINDS)}")
    return label, kinds


def _parse_rows(path: Path, label: str, kinds: dict[str, str]) -> tuple[list[str], list[list[str]], list[str]]:
    if not path.is_file():
        raise DataError(f"{path}: missing data file")
    try:
        with path.open(newline="") as handle:
            return _read_table(csv.reader(handle), path, label, kinds)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc.__class__.__name__})") from None


def _read_table(reader: Any, path: Path, label: str, kinds: dict[str, str]) -> tuple[list[str], list[list[str]], list[str]]:
    """Header and cells of the CSV, each cell checked against its declared kind."""
    header = [h.strip() for h in next(reader, [])]
    if label not in header:
        raise DataError(f"{path}:1: label column {label!r} not in the header")
    undeclared = [h for h in header if h != label and h not in kinds]
    if undeclared:
        raise DataError(f"{path}:1: unknown column {undeclared[0]!r} (not declared in columns.json)")
    missing = [c for c in kinds if c not in header]
    if missing:
        raise DataError(f"{path}:1: declared column {missing[0]!r} is not in the header")
    features = [h for h in header if h != label]
    rows, labels = [], []
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{lineno}: {len(row)} fields, the header has {len(header)}")
        cells = dict(zip(header, (c.strip() for c in row)))
        for column in features:
            _check_cell(cells[column], kinds[column], where=f"{path}:{lineno}", column=column)
        rows.append([cells[c] for c in features])
        labels.append(cells[label])
    if len(rows) < 2:
        raise DataError(f"{path}: needs at least 2 data rows, found {len(rows)}")
    return features, rows, labels


def _check_cell(text: str, kind: str, *, where: str, column: str) -> None:
    if kind == "categorical":
        if text == "":
            raise DataError(f"{where}: empty value in categorical column {column!r}")
        return
    value = parse_number(text, where=where, column=column)
    if kind == "binary" and value not in (0.0, 1.0):
        raise DataError(f"{where}: binary column {column!r} holds {text!r}; use 0 or 1")


@register_dataset("csv", shape=("F",), classes="from the label column", source=CSV_SOURCE)
def load_csv(request: LoadRequest) -> Dataset:
    """A user's table; categorical columns become one-hot groups (categories sorted)."""
    if request.data_root is None:
        raise DataError("csv needs --data-root DIR holding data.csv and columns.json")
    root = request.data_root
    label, kinds = _read_declaration(root / "columns.json")
    features, rows, labels = _parse_rows(root / "data.csv", label, kinds)
    columns, blocks = [], []
    for j, column in enumerate(features):
        cells = [r[j] for r in rows]
        if kinds[column] == "categorical":
            categories = tuple(sorted(set(cells)))
            columns.append((column, "categorical", categories))
            block = np.zeros((len(rows), len(categories)), dtype=np.float32)
            block[np.arange(len(rows)), [categories.index(c) for c in cells]] = 1.0
        else:
            columns.append((column, kinds[column], ()))
            block = np.asarray(cells, dtype=np.float64).reshape(-1, 1)
        blocks.append(block)
    class_names = tuple(sorted(set(labels)))
    if len(class_names) < 2:
        raise DataError(f"{root / 'data.csv'}: label column {label!r} has a single class")
    y = np.asarray([class_names.index(v) for v in labels], dtype=np.int64)
    return make_table(name="csv", values=np.concatenate(blocks, axis=1), labels=y, columns=columns,
                      class_names=class_names, source=f"{root / 'data.csv'}", split=request.split)
