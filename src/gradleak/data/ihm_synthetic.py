"""``ihm-synthetic``: SYNTHETIC ICU stays in the exact on-disk format of the MIMIC-III benchmark.

MIMIC-III is credentialed data and cannot ship with gradleak, so the default time-series set is
generated: a seeded generator writes ``in-hospital-mortality/{train,test}/listfile.csv`` and one
``<subject>_episode1_timeseries.csv`` per stay into a temporary directory, and the records are
then read back by the very reader used for real benchmark files (:mod:`gradleak.data.mimic3`).
So the whole path, files -> discretizer -> attack -> metrics, is exercised without credentials.

The stays are NOT patient data. Each has a latent severity that moves the vitals (heart rate,
blood pressures with systolic > mean > diastolic, respiration, oxygen, temperature, pH,
glucose), the Glasgow coma scale (items summed into the total, spelled in the two charting
systems' styles), capillary refill and oxygen support; values are measured at irregular times
with missing cells; mortality is drawn from the severity (about 13 % died, as in MIMIC-III).
"""

from __future__ import annotations

import csv
import functools
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import Dataset
from .entry import LoadRequest, register_dataset
from .mimic3 import CHANNELS, HOURS, SCHEMA, load_benchmark

SEED = 20190  # generator seed: the data set is the same on every machine
SIZES = {"train": 512, "test": 128}  # stays per split (small: the set is regenerated per process)
SOURCE = "SYNTHETIC ICU stays (not patient data) in MIMIC-III in-hospital-mortality format, 48 h x 76"

# Glasgow coma scale spellings of the two charting systems (MetaVision numbered, CareVue plain),
# indexed by score; verbal score 0 stands for an intubated patient.
EYE = {4: ("4 Spontaneously", "Spontaneously"), 3: ("3 To speech", "To Speech"),
       2: ("2 To pain", "To Pain"), 1: ("1 No Response", "None")}
MOTOR = {6: ("6 Obeys Commands", "Obeys Commands"), 5: ("5 Localizes Pain", "Localizes Pain"),
         4: ("4 Flex-withdraws", "Flex-withdraws"), 3: ("3 Abnorm flexion", "Abnormal Flexion"),
         2: ("2 Abnorm extensn", "Abnormal extension"), 1: ("1 No Response", "No response")}
VERBAL = {5: ("5 Oriented", "Oriented"), 4: ("4 Confused", "Confused"),
          3: ("3 Inapprop words", "Inappropriate Words"), 2: ("2 Incomp sounds", "Incomprehensible sounds"),
          1: ("1 No Response", "No Response"), 0: ("1.0 ET/Trach", "No Response-ETT")}


def _ar1(rng: np.random.Generator, n: int, *, sd: float, rho: float = 0.8) -> np.ndarray:
    """Autocorrelated noise: vitals drift rather than jump from hour to hour."""
    out = np.empty(n)
    out[0] = rng.normal(0, sd)
    for i in range(1, n):
        out[i] = rho * out[i - 1] + rng.normal(0, sd * np.sqrt(1 - rho**2))
    return out


def _gcs(rng: np.random.Generator, severity: float, intubated: bool) -> tuple[int, int, int]:
    impairment = np.clip(rng.normal(1.5 * severity, 1.0), 0, None)
    eye = int(np.clip(round(4 - impairment * 0.8), 1, 4))
    motor = int(np.clip(round(6 - impairment * 1.2), 1, 6))
    verbal = 0 if intubated else int(np.clip(round(5 - impairment), 1, 5))
    return eye, motor, verbal


def episode(rng: np.random.Generator) -> tuple[list[list[str]], int]:
    """Rows (Hours first, then the 17 variables as text, '' = missing) and the mortality label."""
    severity = rng.normal()
    died = int(rng.random() < 1 / (1 + np.exp(-(-2.3 + 1.3 * severity))))
    trend = rng.normal(0.4 * severity if died else -0.2, 0.3)  # who dies tends to get worse
    intubated = bool(rng.random() < 1 / (1 + np.exp(-(severity - 0.8) * 2)))
    system = int(rng.random() < 0.5)  # charting system: numbered or plain GCS spellings
    height = rng.normal(170, 10)
    weight = max(40.0, rng.normal(81 + 0.6 * (height - 170), 16))
    times = np.sort(np.clip(np.arange(HOURS) + rng.uniform(0.02, 0.98, HOURS), 0, HOURS))
    times = times[rng.random(HOURS) > 0.08]  # some hours have no charting at all
    n = len(times)
    drift = severity + trend * times / HOURS
    hr = 86 + 11 * drift + _ar1(rng, n, sd=7)
    sbp = 118 - 9 * drift + _ar1(rng, n, sd=10)
    dbp = 0.52 * sbp + 2 + _ar1(rng, n, sd=5)
    mbp = (sbp + 2 * dbp) / 3 + rng.normal(0, 2, n)
    rr = 19 + 3 * drift + _ar1(rng, n, sd=2.5)
    spo2 = np.clip(98 - 1.8 * np.clip(drift, 0, None) + _ar1(rng, n, sd=1.2), 70, 100)
    temp = 36.8 + 0.4 * drift + _ar1(rng, n, sd=0.3, rho=0.9)
    fio2 = np.clip(0.21 + (0.3 + 0.1 * drift if intubated else 0.0) + _ar1(rng, n, sd=0.05), 0.21, 1.0)
    rows: list[list[str]] = []
    for i, t in enumerate(times):
        cells = dict.fromkeys(CHANNELS, "")
        for name, value, fmt in (("Heart Rate", hr[i], "{:.0f}"), ("Systolic blood pressure", sbp[i], "{:.0f}"),
                                 ("Diastolic blood pressure", dbp[i], "{:.0f}"),
                                 ("Mean blood pressure", mbp[i], "{:.0f}"), ("Respiratory rate", rr[i], "{:.0f}"),
                                 ("Oxygen saturation", spo2[i], "{:.0f}")):
            if rng.random() > 0.06:
                cells[name] = fmt.format(value)
        if i % 4 == 0 and rng.random() > 0.1:
            cells["Temperature"] = f"{temp[i]:.1f}"
        if intubated and i % 3 == 0:
            cells["Fraction inspired oxygen"] = f"{fio2[i]:.2f}"
        if i % 6 == 1:
            cells["Glucose"] = f"{max(40.0, 128 + 25 * drift[i] + rng.normal(0, 25)):.0f}"
        if i % 8 == 2 and (intubated or rng.random() < 0.3):
            cells["pH"] = f"{7.40 - 0.04 * drift[i] + rng.normal(0, 0.03):.2f}"
        if i % 4 == 0:
            eye, motor, verbal = _gcs(rng, drift[i], intubated)
            cells["Glascow coma scale eye opening"] = EYE[eye][system]
            cells["Glascow coma scale motor response"] = MOTOR[motor][system]
            cells["Glascow coma scale verbal response"] = VERBAL[verbal][system]
            cells["Glascow coma scale total"] = str(eye + motor + max(verbal, 1))
        if i % 12 == 5 and rng.random() < 0.5:
            cells["Capillary refill rate"] = "1.0" if rng.random() < 0.1 + 0.2 * max(drift[i], 0) else "0.0"
        if i == 0:
            cells["Height"] = f"{height:.0f}" if rng.random() < 0.6 else ""
            cells["Weight"] = f"{weight:.1f}"
        rows.append([f"{t:.4f}", *cells.values()])
    return rows, died


def write_benchmark(root: Path, *, sizes: dict[str, int] | None = None, seed: int = SEED) -> Path:
    """Write a synthetic ``in-hospital-mortality`` directory under ``root``; returns its path."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "in-hospital-mortality"
    subject = 10_000
    for split, count in (sizes or SIZES).items():
        folder = base / split
        folder.mkdir(parents=True, exist_ok=True)
        listing = []
        for _ in range(count):
            subject += int(rng.integers(1, 40))
            rows, died = episode(rng)
            name = f"{subject}_episode1_timeseries.csv"
            with (folder / name).open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["Hours", *CHANNELS])
                writer.writerows(rows)
            listing.append((name, died))
        with (folder / "listfile.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["stay", "y_true"])
            writer.writerows(listing)
    return base


@functools.lru_cache(maxsize=1)
def _cached() -> dict[str, Dataset]:
    """Every split from one write + read (train statistics standardise all of them)."""
    with tempfile.TemporaryDirectory(prefix="gradleak-ihm-synthetic-") as tmp:
        write_benchmark(Path(tmp))
        data = load_benchmark(Path(tmp), split="all", name="ihm-synthetic", source=SOURCE)
    n = SIZES["train"]
    parts = {"train": slice(0, n), "test": slice(n, None), "all": slice(None)}
    return {
        split: Dataset(name=data.name, inputs=data.inputs[part], labels=data.labels[part],
                       class_names=data.class_names, source=SOURCE, kind=data.kind, data_range=data.data_range,
                       meta={**data.meta, "split": split, "stays": len(data.labels[part]), "synthetic": True,
                             "generator_seed": SEED})
        for split, part in parts.items()
    }


@register_dataset("ihm-synthetic", shape=SCHEMA.record_shape, classes=2, source=SOURCE)
def load_ihm_synthetic(request: LoadRequest) -> Dataset:
    """Generate (seeded), write in benchmark format, read back; cached per process."""
    datasets = _cached()
    if request.split not in datasets:
        raise DataError(f"ihm-synthetic: split {request.split!r} is not available; choose {', '.join(datasets)}")
    data = datasets[request.split]
    return Dataset(name=data.name, inputs=data.inputs.clone(), labels=data.labels.clone(),
                   class_names=data.class_names, source=data.source, kind=data.kind,
                   data_range=data.data_range, meta=dict(data.meta))
