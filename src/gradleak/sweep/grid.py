"""GRID.yaml -> the list of cells of a sweep.

A grid names lists for the axes and, optionally, settings shared by every cell::

    datasets: [histology]
    models: [lenet]
    attacks: [idlg, {name: ig, options: {iterations: 50}}]
    batch_sizes: [1, 2, 4]
    defenses: [none]            # defense specs, see `gradleak defenses` when installed
    seeds: [0, 1, 2]
    scenario: {image_size: 16, trained_steps: 0, protocol: fedsgd}

Each cell has a stable id (a hash of its parameters), so a rerun recognises finished cells
even if the grid file was reordered or extended.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GradleakError

AXES = ("datasets", "models", "attacks", "batch_sizes", "defenses", "seeds")
# Scenario settings a grid may fix for all cells (the Scenario fields that are not axes).
SCENARIO_KEYS = ("protocol", "local_epochs", "local_batch_size", "local_lr", "trained_steps", "train_mode",
                 "share_labels", "image_size", "grayscale", "data_root", "model_options")
DEFAULT_AXES: dict[str, list[Any]] = {"defenses": ["none"], "seeds": [0], "batch_sizes": [1]}


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: everything needed to reproduce it, nothing else."""

    dataset: str
    model: str
    attack: str
    batch_size: int
    defense: str  # defense spec ("none" = undefended)
    seed: int
    attack_options: dict[str, Any] = field(default_factory=dict)  # attack config overrides
    scenario: dict[str, Any] = field(default_factory=dict)  # shared scenario settings

    @property
    def id(self) -> str:
        """Stable 12-hex id of the cell's parameters (same cell -> same id across reruns)."""
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Cell":
        return cls(**d)


@dataclass(frozen=True)
class Grid:
    """The parsed grid file and its cells (in file order, seeds innermost)."""

    cells: tuple[Cell, ...]
    source: dict[str, Any]  # the grid as read, for the record


def _as_list(value: Any, *, key: str) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise GradleakError(f"grid: {key} is empty")
    return items


def _attack_entry(entry: Any, shared: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str):
        return entry, dict(shared.get(entry, {}))
    if isinstance(entry, dict) and isinstance(entry.get("name"), str) and set(entry) <= {"name", "options"}:
        options = entry.get("options") or {}
        if not isinstance(options, dict):
            raise GradleakError(f"grid: options of attack {entry['name']!r} must be a mapping")
        return entry["name"], {**shared.get(entry["name"], {}), **options}
    raise GradleakError(f"grid: an attack must be a name or {{name: ..., options: {{...}}}}, got {entry!r}")


def _int_list(values: list[Any], *, key: str, minimum: int) -> list[int]:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise GradleakError(f"grid: {key} must hold integers >= {minimum}, got {v!r}")
    return values


def parse_grid(raw: Any) -> Grid:
    """Validate a grid mapping (names are checked against the registries) and expand it."""
    from ..attacks import create_attack
    from ..data import list_datasets
    from ..models import MODELS

    if not isinstance(raw, dict):
        raise GradleakError("grid: the file must hold a mapping of axes (datasets, models, attacks, ...)")
    unknown = sorted(set(raw) - set(AXES) - {"scenario", "attack_options"})
    if unknown:
        raise GradleakError(f"grid: unknown key(s) {', '.join(unknown)}; valid: {', '.join(AXES)}, scenario, attack_options")
    missing = [k for k in ("datasets", "models", "attacks") if k not in raw]
    if missing:
        raise GradleakError(f"grid: missing {', '.join(missing)}")
    axes = {k: _as_list(raw.get(k, DEFAULT_AXES.get(k)), key=k) for k in AXES}
    scenario = raw.get("scenario") or {}
    if not isinstance(scenario, dict) or set(scenario) - set(SCENARIO_KEYS):
        bad = sorted(set(scenario) - set(SCENARIO_KEYS)) if isinstance(scenario, dict) else scenario
        raise GradleakError(f"grid: scenario has unknown setting(s) {bad}; valid: {', '.join(SCENARIO_KEYS)}")
    shared_options = raw.get("attack_options") or {}
    if not isinstance(shared_options, dict):
        raise GradleakError("grid: attack_options must map attack names to option mappings")
    known = {d["name"] for d in list_datasets()}
    for name in axes["datasets"]:
        if not isinstance(name, str) or (name not in known and not name.startswith("medmnist:")):
            raise GradleakError(f"grid: unknown dataset {name!r}; choose from {', '.join(sorted(known))}")
    for name in axes["models"]:
        MODELS.get(str(name))
    attacks = [_attack_entry(a, shared_options) for a in axes["attacks"]]
    for name, options in attacks:
        create_attack(name, **options)  # unknown names or options fail before any cell runs
    _int_list(axes["batch_sizes"], key="batch_sizes", minimum=1)
    _int_list(axes["seeds"], key="seeds", minimum=0)
    from .cell import check_defense

    for spec in axes["defenses"]:
        check_defense(str(spec))
    cells = tuple(
        Cell(dataset=d, model=m, attack=a, attack_options=o, batch_size=b, defense=str(df), seed=s, scenario=dict(scenario))
        for d, m, (a, o), b, df, s in itertools.product(
            axes["datasets"], axes["models"], attacks, axes["batch_sizes"], axes["defenses"], axes["seeds"])
    )
    return Grid(cells=cells, source=raw)


def load_grid(path: str | Path) -> Grid:
    """Read GRID.yaml (or .json) safely (``yaml.safe_load``: no objects constructed)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise GradleakError(f"grid file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise GradleakError(f"grid file {path} is not valid YAML ({exc.__class__.__name__})") from None
    return parse_grid(raw)
