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
from ..validation import as_bool, as_float, as_int, as_mapping, as_str, check_keys, did_you_mean

AXES = ("datasets", "models", "attacks", "batch_sizes", "defenses", "seeds")
# Scenario settings a grid may fix for all cells (the Scenario fields that are not axes).
SCENARIO_KEYS = ("protocol", "local_epochs", "local_batch_size", "local_lr", "local_shuffle", "trained_steps", "train_mode",
                 "share_labels", "share_buffers", "image_size", "grayscale", "data_root", "model_options")
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


def _int_list(values: list[Any], *, key: str, minimum: int, maximum: int) -> list[int]:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= maximum:
            raise GradleakError(f"grid: {key} must hold integers from {minimum} to {maximum}, got {v!r}")
    return values


# How each shared scenario setting is read: YAML's own types, no coercion ("16" is not 16).
_SCENARIO_READERS = {
    "protocol": lambda v, w: as_str(v, what=w),
    "local_epochs": lambda v, w: as_int(v, what=w, minimum=1),
    "local_batch_size": lambda v, w: None if v is None else as_int(v, what=w, minimum=1),
    "local_lr": lambda v, w: as_float(v, what=w, positive=True),
    "local_shuffle": lambda v, w: as_bool(v, what=w),
    "trained_steps": lambda v, w: as_int(v, what=w, minimum=0),
    "train_mode": lambda v, w: as_bool(v, what=w),
    "share_labels": lambda v, w: as_bool(v, what=w),
    "share_buffers": lambda v, w: as_bool(v, what=w),
    "image_size": lambda v, w: None if v is None else as_int(v, what=w, minimum=1),
    "grayscale": lambda v, w: as_bool(v, what=w),
    "data_root": lambda v, w: None if v is None else as_str(v, what=w),
    "model_options": lambda v, w: as_mapping(v, what=w),
}


def _check_scenario(scenario: dict[str, Any], *, models: list[str]) -> None:
    """Type-check the shared settings, and the protocol and model options against their registries."""
    from ..fl.protocol import PROTOCOLS
    from ..models import complete_options

    for key, value in scenario.items():
        _SCENARIO_READERS[key](value, f"grid: scenario {key}")
    if "protocol" in scenario:
        PROTOCOLS.get(scenario["protocol"])
    for model in models:
        complete_options(model, **scenario.get("model_options", {}))


def parse_grid(raw: Any) -> Grid:
    """Validate a grid mapping (names are checked against the registries) and expand it."""
    from ..attacks import ATTACKS, create_attack
    from ..models import MODELS

    if not isinstance(raw, dict):
        raise GradleakError("grid: the file must hold a mapping of axes (datasets, models, attacks, ...)")
    unknown = sorted(set(raw) - set(AXES) - {"scenario", "attack_options"}, key=str)
    if unknown:
        raise GradleakError(f"grid: unknown key(s) {', '.join(map(str, unknown))}; "
                            f"valid: {', '.join(AXES)}, scenario, attack_options"
                            f"{did_you_mean(unknown[0], (*AXES, 'scenario', 'attack_options'))}")
    missing = [k for k in ("datasets", "models", "attacks") if k not in raw]
    if missing:
        raise GradleakError(f"grid: missing {', '.join(missing)}")
    axes = {k: _as_list(raw.get(k, DEFAULT_AXES.get(k)), key=k) for k in AXES}
    scenario = raw.get("scenario") or {}
    if not isinstance(scenario, dict):
        raise GradleakError(f"grid: scenario must be a mapping of setting: value, got {scenario!r}")
    check_keys(scenario, where="grid: scenario", optional=SCENARIO_KEYS)
    shared_options = raw.get("attack_options") or {}
    if not isinstance(shared_options, dict):
        raise GradleakError("grid: attack_options must map attack names to option mappings")
    from ..data import _resolve

    for name in axes["datasets"]:
        if not isinstance(name, str):
            raise GradleakError(f"grid: a dataset must be a name, got {name!r}")
        _resolve(name)  # unknown names and medmnist flags fail here, with a close match when there is one
    for name in axes["models"]:
        if not isinstance(name, str):
            raise GradleakError(f"grid: a model must be a name, got {name!r}")
        MODELS.get(name)
    _check_scenario(scenario, models=axes["models"])
    for name, options in shared_options.items():
        ATTACKS.get(name)  # attack_options for an attack nobody runs is a typo
        if not isinstance(options, dict):
            raise GradleakError(f"grid: attack_options of {name!r} must be a mapping of option: value")
    attacks = [_attack_entry(a, shared_options) for a in axes["attacks"]]
    for name, options in attacks:
        create_attack(name, **options)  # unknown names or options fail before any cell runs
    from ..observation import MAX_SAMPLES

    _int_list(axes["batch_sizes"], key="batch_sizes", minimum=1, maximum=MAX_SAMPLES)
    _int_list(axes["seeds"], key="seeds", minimum=0, maximum=2**63 - 1)  # torch.manual_seed's range
    from .cell import check_defense

    for spec in axes["defenses"]:
        if not isinstance(spec, str):
            raise GradleakError(f"grid: a defense must be a spec such as none or noise:0.01, got {spec!r}")
        check_defense(spec)
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
    if not path.exists():
        raise GradleakError(f"grid file {path} does not exist")
    if not path.is_file():
        raise GradleakError(f"grid file {path} is not a file")
    try:
        raw = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise GradleakError(f"grid file {path} is not UTF-8 text") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise GradleakError(f"grid file {path} is not valid YAML ({exc.__class__.__name__})") from None
    return parse_grid(raw)
