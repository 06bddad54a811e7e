"""Real clinical tables that ship as files inside installable packages (no download at run time).

Each table is declared once (:data:`TABLES`): which package carries the file, how to read it,
the outcome used as the label and every kept column with its kind. The file is located with
``importlib.util.find_spec`` and read with the standard library (CSV) or scipy (ARFF): the
package's own code is never imported, so a table only needs the package *installed*
(``pip install 'gradleak[clinical]'``). Rows with a missing value in a kept column are dropped;
binary columns map the declared value to 1; categorical columns become one-hot groups
(categories in sorted order). Rows then go through :func:`gradleak.data.tabular.make_table`
(seeded 80/20 split, continuous columns standardised with the train part's statistics).

Columns that only exist because of the outcome (e.g. flchain's cause of death, recorded only
for those who died) are left out: they would hand the label to the attacker for free.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError
from ..registry import Registry
from .base import Dataset
from .entry import LoadRequest, register_dataset
from .tabular import make_table

EXTRA_HINT = "pip install 'gradleak[clinical]'"
MISSING = ("", "NA", "?", "nan", "NaN")  # cell texts that mean "not recorded"

Reader = Callable[[Path], list[dict[str, str]]]
READERS: Registry[Reader] = Registry("table format")


@READERS.register("csv", description="comma-separated with a header row")
def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return [{k.strip().strip('"'): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(handle)]


@READERS.register("arff", description="Weka ARFF (scipy.io.arff)")
def _read_arff(path: Path) -> list[dict[str, str]]:
    from scipy.io import arff

    data, _meta = arff.loadarff(path)
    rows = []
    for record in data:
        row = {}
        for name in data.dtype.names:
            value = record[name]
            if isinstance(value, bytes):
                row[name] = value.decode()
            else:
                row[name] = "" if math.isnan(float(value)) else repr(float(value))
        rows.append(row)
    return rows


@dataclass(frozen=True)
class ClinicalTable:
    """Declaration of one bundled table."""

    name: str  # registry name (what `gradleak datasets` lists)
    package: str  # import name of the package that ships the file
    distribution: str  # its pip name, for the error message
    path: str  # the file, relative to the package folder
    reader: str  # key of READERS
    label: str  # outcome column; ``positive`` maps to class 1
    positive: str  # outcome value of class 1
    class_names: tuple[str, str]  # names of class 0 and class 1
    columns: tuple[tuple[str, str, str], ...]  # (column, kind, value meaning 1 for binary else "")
    source: str  # one line for `gradleak datasets`: content, package, licence

    def file(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise DataError(f"dataset {self.name!r} reads a file shipped by {self.distribution}, which is not "
                            f"installed; {EXTRA_HINT}")
        path = Path(list(spec.submodule_search_locations)[0]) / self.path
        if not path.is_file():
            raise DataError(f"dataset {self.name!r}: {path} is missing from the installed {self.distribution}")
        return path


def _category_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def load_table(table: ClinicalTable, *, split: str) -> Dataset:
    """Read, clean and encode ``table``; the chosen split of it as a :class:`Dataset`."""
    path = table.file()
    rows = READERS.get(table.reader)(path)
    needed = [c for c, _, _ in table.columns] + [table.label]
    absent = [c for c in needed if rows and c not in rows[0]]
    if absent:
        raise DataError(f"{path}: column {absent[0]!r} not found (package version changed?)")
    rows = [r for r in rows if all(r[c] not in MISSING for c in needed)]
    if len(rows) < 2:
        raise DataError(f"{path}: fewer than 2 complete rows")
    columns, blocks = [], []
    for column, kind, one in table.columns:
        cells = [r[column] for r in rows]
        if kind == "categorical":
            categories = tuple(sorted(set(cells), key=_category_key))
            block = np.zeros((len(rows), len(categories)), dtype=np.float64)
            block[np.arange(len(rows)), [categories.index(c) for c in cells]] = 1.0
            columns.append((column, kind, categories))
        elif kind == "binary":
            block = np.asarray([[1.0 if c == one else 0.0] for c in cells])
            columns.append((column, kind, ()))
        else:
            block = np.asarray([[float(c)] for c in cells])
            columns.append((column, kind, ()))
        blocks.append(block)
    labels = np.asarray([1 if r[table.label] == table.positive else 0 for r in rows], dtype=np.int64)
    return make_table(name=table.name, values=np.concatenate(blocks, axis=1), labels=labels, columns=columns,
                      class_names=table.class_names, source=f"{table.source} ({path.name})", split=split)


def _cont(*names: str) -> tuple[tuple[str, str, str], ...]:
    return tuple((n, "continuous", "") for n in names)


def _flags(*names: str, one: str = "1") -> tuple[tuple[str, str, str], ...]:
    return tuple((n, "binary", one) for n in names)


def _cats(*names: str) -> tuple[tuple[str, str, str], ...]:
    return tuple((n, "categorical", "") for n in names)


TABLES: dict[str, ClinicalTable] = {
    t.name: t for t in (
        ClinicalTable(
            name="gbsg2", package="lifelines", distribution="lifelines", path="datasets/gbsg2.csv", reader="csv",
            label="cens", positive="1", class_names=("censored", "recurrence"),
            columns=(("horTh", "binary", "yes"), *_cont("age"), ("menostat", "binary", "Post"), *_cont("tsize"),
                     *_cats("tgrade"), *_cont("pnodes", "progrec", "estrec", "time")),
            source="GBSG2 breast cancer trial (686 patients; lifelines, MIT; data from R TH.data)",
        ),
        ClinicalTable(
            name="actg175", package="lifelines", distribution="lifelines", path="datasets/ACTG175.csv", reader="csv",
            label="cens", positive="1", class_names=("censored", "event"),
            columns=(*_cont("age", "wtkg"), *_flags("hemo", "homo", "drugs"), *_cats("karnof"),
                     *_flags("oprior", "z30"), *_cont("preanti"), *_flags("race", "gender", "symptom"),
                     *_cats("strat", "arms"), *_flags("offtrt"), *_cont("cd40", "cd420", "cd80", "cd820", "days")),
            source="ACTG 175 HIV trial (2139 patients; lifelines, MIT; data from R speff2trial)",
        ),
        ClinicalTable(
            name="whas500", package="sksurv", distribution="scikit-survival", path="datasets/data/whas500.arff",
            reader="arff", label="fstat", positive="1", class_names=("alive", "dead"),
            columns=(*_cont("age"), *_flags("gender"), *_cont("hr", "sysbp", "diasbp", "bmi"),
                     *_flags("cvd", "afb", "sho", "chf", "av3", "miord", "mitype"), *_cont("los", "lenfol")),
            source="Worcester Heart Attack Study (500 patients; scikit-survival file, package GPL-3, data Hosmer et al.)",
        ),
        ClinicalTable(
            name="flchain", package="sksurv", distribution="scikit-survival", path="datasets/data/flchain.arff",
            reader="arff", label="death", positive="dead", class_names=("alive", "dead"),
            columns=(*_cont("age"), ("sex", "binary", "M"), *_cats("sample.yr"), *_cont("kappa", "lambda"),
                     *_cats("flc.grp"), *_cont("creatinine"), ("mgus", "binary", "yes"), *_cont("futime")),
            source="serum free light chain cohort (6524 complete of 7874; scikit-survival file, package GPL-3, data R survival)",
        ),
    )
}

SHAPES = {"gbsg2": 11, "actg175": 28, "whas500": 15, "flchain": 26}  # one-hot width of each table's rows


def _register(table: ClinicalTable) -> None:
    @register_dataset(table.name, shape=(SHAPES[table.name],), classes=2, source=table.source)
    def _load(request: LoadRequest) -> Dataset:
        return load_table(table, split=request.split)


for _table in TABLES.values():
    _register(_table)
