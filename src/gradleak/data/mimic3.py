"""MIMIC-III in-hospital mortality (Harutyunyan et al. 2019): the benchmark's files, discretised.

Users with credentialed access build the benchmark with the mimic3-benchmarks scripts and point
``--data-root`` at its ``in-hospital-mortality`` directory (or its parent). Layout read here::

    in-hospital-mortality/{train,test}/listfile.csv      header "stay,y_true"
    in-hospital-mortality/{train,test}/<subject>_episode<k>_timeseries.csv
        header "Hours" + any of the 17 variables below; empty cells are missing values
    in-hospital-mortality/{train,val,test}_listfile.csv  optional, written by the benchmark's
        split_train_val script: train/val stays both live in train/; when present they define
        the train and val splits (otherwise train/listfile.csv is train and there is no val)

Each episode is discretised like the benchmark's ``Discretizer`` (timestep 1 h, start at hour
0, 48 bins, the last value in a bin wins, "previous" imputation falling back to the normal
value, observation masks stored): 12 continuous columns + 47 one-hot columns for capillary
refill and the four Glasgow coma scale items = 59 values, + 17 mask columns = 76. Continuous
columns are then standardised with mean/std of the *train* split, as the benchmark's
normalizer does. Any malformed file is a :class:`DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .base import Dataset
from .entry import LoadRequest, register_dataset
from .schema import RecordSchema, build_schema, parse_number, standardise

HOURS = 48  # the task predicts mortality from the first 48 hours of the ICU stay
TIMESTEP = 1.0  # hours per bin (the benchmark's in-hospital-mortality setting)
EPS = 1e-6  # the benchmark's tolerance on bin boundaries

# The 17 variables in the benchmark's column order, with the categories of the categorical ones
# (one-hot columns in this order) and the normal values used before a variable is first seen.
CHANNELS: tuple[str, ...] = (
    "Capillary refill rate", "Diastolic blood pressure", "Fraction inspired oxygen",
    "Glascow coma scale eye opening", "Glascow coma scale motor response", "Glascow coma scale total",
    "Glascow coma scale verbal response", "Glucose", "Heart Rate", "Height", "Mean blood pressure",
    "Oxygen saturation", "Respiratory rate", "Systolic blood pressure", "Temperature", "Weight", "pH",
)
CATEGORIES: dict[str, tuple[str, ...]] = {
    "Capillary refill rate": ("0.0", "1.0"),
    "Glascow coma scale eye opening": (
        "To Pain", "3 To speech", "1 No Response", "4 Spontaneously", "None", "To Speech", "Spontaneously",
        "2 To pain"),
    "Glascow coma scale motor response": (
        "1 No Response", "3 Abnorm flexion", "Abnormal extension", "No response", "4 Flex-withdraws",
        "Localizes Pain", "Flex-withdraws", "Obeys Commands", "Abnormal Flexion", "6 Obeys Commands",
        "5 Localizes Pain", "2 Abnorm extensn"),
    "Glascow coma scale total": ("11", "10", "13", "12", "15", "14", "3", "5", "4", "7", "6", "9", "8"),
    "Glascow coma scale verbal response": (
        "1 No Response", "No Response", "Confused", "Inappropriate Words", "Oriented", "No Response-ETT",
        "5 Oriented", "Incomprehensible sounds", "1.0 ET/Trach", "4 Confused", "2 Incomp sounds",
        "3 Inapprop words"),
}
NORMAL_VALUES: dict[str, str] = {
    "Capillary refill rate": "0.0", "Diastolic blood pressure": "59.0", "Fraction inspired oxygen": "0.21",
    "Glascow coma scale eye opening": "4 Spontaneously", "Glascow coma scale motor response": "6 Obeys Commands",
    "Glascow coma scale total": "15", "Glascow coma scale verbal response": "5 Oriented", "Glucose": "128.0",
    "Heart Rate": "86", "Height": "170.0", "Mean blood pressure": "77.0", "Oxygen saturation": "98.0",
    "Respiratory rate": "19", "Systolic blood pressure": "118.0", "Temperature": "36.6", "Weight": "81.0",
    "pH": "7.4",
}
CLASS_NAMES = ("survived", "died in hospital")
LISTFILE_HEADER = ("stay", "y_true")


def ihm_schema(*, mean: list[float] | None = None, std: list[float] | None = None) -> RecordSchema:
    """The 48 x 76 layout: values of the 17 variables (one-hot where categorical), then masks."""
    columns = [(c, "categorical", CATEGORIES[c]) if c in CATEGORIES else (c, "continuous", ()) for c in CHANNELS]
    columns += [(f"mask->{c}", "binary", ()) for c in CHANNELS]
    return build_schema(columns, time_steps=HOURS, mean=mean, std=std)


SCHEMA = ihm_schema()
_OFFSETS = {f.name: (f.start, f.stop) for f in SCHEMA.features}


def _category_index(channel: str, value: str, *, where: str) -> int:
    """Position of ``value`` in the channel's categories; numeric spellings ("15.0") match too."""
    cats = CATEGORIES[channel]
    if value in cats:
        return cats.index(value)
    try:
        number = float(value)
        for i, c in enumerate(cats):
            try:
                if float(c) == number:
                    return i
            except ValueError:
                continue
    except ValueError:
        pass
    raise DataError(f"{where}: unknown value {value!r} for {channel!r}; valid: {', '.join(cats)}")


def _encode(channel: str, value: str, *, where: str) -> np.ndarray:
    """The value columns of one observation (one-hot vector or a single float)."""
    start, stop = _OFFSETS[channel]
    out = np.zeros(stop - start)
    if channel in CATEGORIES:
        out[_category_index(channel, value, where=where)] = 1.0
        return out
    out[0] = parse_number(value, where=where, column=channel)
    return out


def discretize_episode(path: Path) -> np.ndarray:
    """One ``*_timeseries.csv`` as a 48 x 76 float array (values then masks, not standardised)."""
    values = np.zeros((HOURS, SCHEMA.num_columns - len(CHANNELS)))
    mask = np.zeros((HOURS, len(CHANNELS)))
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise DataError(f"{path}: cannot read episode ({exc.strerror})") from None
    with handle:
        _parse_episode(csv.reader(handle), path, values, mask)
    _impute_previous(values, mask)
    return np.concatenate([values, mask], axis=1)


def _parse_episode(reader: Any, path: Path, values: np.ndarray, mask: np.ndarray) -> None:
    """Fill the bins of one episode: the last observation in a bin wins (the benchmark's rule)."""
    try:
        header = next(reader, None)
        if not header or header[0] != "Hours":
            raise DataError(f"{path}:1: header must start with 'Hours', got {header[:1] if header else 'nothing'}")
        unknown = [c for c in header[1:] if c not in _OFFSETS or c.startswith("mask->")]
        if unknown:
            raise DataError(f"{path}:1: unknown column {unknown[0]!r}; valid columns are Hours and {', '.join(CHANNELS)}")
        channel_ids = [CHANNELS.index(c) for c in header[1:]]
        for lineno, row in enumerate(reader, start=2):
            where = f"{path}:{lineno}"
            if len(row) != len(header):
                raise DataError(f"{where}: {len(row)} fields, the header has {len(header)}")
            try:
                hours = float(row[0])
            except ValueError:
                raise DataError(f"{where}: non-numeric Hours {row[0]!r}") from None
            if not math.isfinite(hours):
                raise DataError(f"{where}: non-finite Hours {row[0]!r}")
            if hours < -EPS or hours > HOURS + EPS:
                continue  # outside the task's window (the benchmark drops these rows too)
            bin_id = min(max(int(hours / TIMESTEP - EPS), 0), HOURS - 1)
            for cid, text in zip(channel_ids, row[1:]):
                if text == "":
                    continue
                channel = CHANNELS[cid]
                start, stop = _OFFSETS[channel]
                values[bin_id, start:stop] = _encode(channel, text, where=where)
                mask[bin_id, cid] = 1.0
    except (UnicodeDecodeError, csv.Error) as exc:  # the reader counts the lines it got; a decode error is the next
        line = reader.line_num + (1 if isinstance(exc, UnicodeDecodeError) else 0)
        raise DataError(f"{path}:{line}: not a readable CSV episode ({exc.__class__.__name__})") from None


def _impute_previous(values: np.ndarray, mask: np.ndarray) -> None:
    """Fill unobserved bins with the last observed value, or the normal value before any."""
    for cid, channel in enumerate(CHANNELS):
        start, stop = _OFFSETS[channel]
        current = _encode(channel, NORMAL_VALUES[channel], where="normal values")
        for t in range(HOURS):
            if mask[t, cid]:
                current = values[t, start:stop].copy()
            else:
                values[t, start:stop] = current


def read_listfile(path: Path) -> list[tuple[str, int]]:
    """``(episode file name, label)`` pairs of a ``listfile.csv`` with header ``stay,y_true``."""
    if not path.is_file():
        raise DataError(f"{path}: missing listfile (expected header 'stay,y_true')")
    try:
        with path.open(newline="") as handle:
            rows = _parse_listfile(csv.reader(handle), path)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV listfile ({exc.__class__.__name__})") from None
    if not rows:
        raise DataError(f"{path}: the listfile names no stays")
    return rows


def _parse_listfile(reader: Any, path: Path) -> list[tuple[str, int]]:
    """Rows of a listfile; stay names must be plain file names (no path can escape the folder)."""
    rows: list[tuple[str, int]] = []
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header[:2]) != LISTFILE_HEADER:
        raise DataError(f"{path}:1: header must be 'stay,y_true', got {','.join(header or [])!r}")
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) < 2 or row[1].strip() not in ("0", "1"):
            raise DataError(f"{path}:{lineno}: expected '<stay file>,<0|1>', got {','.join(row)!r}")
        name = row[0].strip()
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise DataError(f"{path}:{lineno}: invalid stay file name {name!r}")
        rows.append((name, int(row[1])))
    return rows


def benchmark_directory(root: Path) -> Path:
    """The ``in-hospital-mortality`` folder, given it or its parent."""
    nested = root / "in-hospital-mortality"
    return nested if nested.is_dir() else root


# Listfiles per split, first existing one wins: (listfile relative to the task folder, folder of
# the episode files). The benchmark's split_train_val script writes {train,val}_listfile.csv
# beside train/ (both name files inside train/); without them train/listfile.csv is the train split.
SPLIT_LISTFILES: dict[str, tuple[tuple[str, str], ...]] = {
    "train": (("train_listfile.csv", "train"), ("train/listfile.csv", "train")),
    "val": (("val_listfile.csv", "train"),),
    "test": (("test_listfile.csv", "test"), ("test/listfile.csv", "test")),
}
PROGRESS_MIN_STAYS = 2000  # show a progress bar when a split has at least this many episode files


def split_listfile(root: Path, split: str) -> tuple[Path, Path]:
    """(listfile, episode folder) of one split; a missing listfile names the expected path."""
    choices = SPLIT_LISTFILES[split]
    for listfile, folder in choices:
        if (root / listfile).is_file():
            return root / listfile, root / folder
    expected = " or ".join(str(root / listfile) for listfile, _ in choices)
    raise DataError(f"{expected}: missing listfile (expected header 'stay,y_true')")


def read_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Raw (not standardised) records ``N x 48 x 76``, labels and stay names of one split."""
    from tqdm import tqdm

    listfile, folder = split_listfile(root, split)
    stays = read_listfile(listfile)
    episodes = tqdm(stays, desc=f"reading {split} episodes", unit="stay", file=sys.stderr, leave=False,
                    disable=len(stays) < PROGRESS_MIN_STAYS)
    records = np.stack([discretize_episode(folder / name) for name, _ in episodes]).astype(np.float32)
    labels = np.asarray([y for _, y in stays], dtype=np.int64)
    return records, labels, [name for name, _ in stays]


def load_benchmark(root: Path, *, split: str, name: str, source: str) -> Dataset:
    """A benchmark directory as a time-series :class:`Dataset`, standardised with train statistics."""
    root = benchmark_directory(Path(root))
    if not root.is_dir():
        raise DataError(f"{root}: benchmark directory does not exist")
    has_val = any((root / listfile).is_file() for listfile, _ in SPLIT_LISTFILES["val"])
    parts = {"train": ["train"], "val": ["val"], "test": ["test"],
             "all": ["train", "val", "test"] if has_val else ["train", "test"]}.get(split)
    if parts is None or (split == "val" and not has_val):
        raise DataError(f"{name}: split {split!r} is not available in {root}; choose "
                        + ("train, val, test or all" if has_val else "train, test or all (no val_listfile.csv)"))
    loaded = {"train": read_split(root, "train")}
    for p in parts:
        if p not in loaded:
            loaded[p] = read_split(root, p)
    x = torch.from_numpy(np.concatenate([loaded[p][0] for p in parts]))
    y = torch.from_numpy(np.concatenate([loaded[p][1] for p in parts]))
    inputs, mean, std = standardise(x, SCHEMA, reference=torch.from_numpy(loaded["train"][0]))
    schema = ihm_schema(mean=mean, std=std)
    return Dataset(
        name=name, inputs=inputs, labels=y, class_names=CLASS_NAMES, source=source, kind="timeseries",
        data_range=1.0, meta={"schema": schema.to_json(), "split": split, "stays": len(y)},
    )


SOURCE = "MIMIC-III in-hospital mortality benchmark files (Harutyunyan et al.), read from --data-root"


@register_dataset("mimic3-ihm", shape=(HOURS, SCHEMA.num_columns), classes=2, source=SOURCE)
def load_mimic3_ihm(request: LoadRequest) -> Dataset:
    """The user's own benchmark directory (credentialed data: never shipped or downloaded)."""
    if request.data_root is None:
        raise DataError("mimic3-ihm needs --data-root pointing at the benchmark's in-hospital-mortality directory")
    return load_benchmark(request.data_root, split=request.split, name="mimic3-ihm", source=SOURCE)
