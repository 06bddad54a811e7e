"""Run one sweep cell: simulate the client, apply the defense, attack, score, write outputs.

Pure composition of :func:`gradleak.scenario.simulate`, :func:`gradleak.attacks.create_attack`
and :mod:`gradleak.runner`; the outputs of a cell are the standard ones of ``gradleak attack``
(``config.json``, ``metrics.json``, ``reconstruction.png``, ...) in ``cells/<cell id>/``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import GradleakError
from .grid import Cell

SCALAR_METRICS = ("psnr", "ssim", "mse", "label_accuracy", "label_count_accuracy", "seconds", "gradient_loss")


def check_defense(spec: str) -> None:
    """Fail early on a defense spec that cannot be applied (unknown name, bad value)."""
    if spec != "none":
        from ..defenses import parse_defense

        parse_defense(spec)


def cell_scenario(cell: Cell):
    """The :class:`Scenario` of a cell (grid-wide settings plus the cell's axes)."""
    from ..fl.protocol import Protocol
    from ..scenario import Scenario

    s = dict(cell.scenario)
    protocol = Protocol(name=s.pop("protocol", "fedsgd"), lr=float(s.pop("local_lr", 0.1)),
                        local_epochs=int(s.pop("local_epochs", 1)), local_batch_size=s.pop("local_batch_size", None),
                        shuffle=bool(s.pop("local_shuffle", False)))
    return Scenario(dataset=cell.dataset, model=cell.model, batch_size=cell.batch_size, protocol=protocol,
                    seed=cell.seed, defense=None if cell.defense == "none" else cell.defense, **s)


def run_cell(cell: Cell, *, cells_dir: str | Path, threads: int | None = None) -> dict[str, Any]:
    """Run ``cell`` and return its journal record; failures become ``status: error`` records."""
    from ..attacks import create_attack
    from ..defenses.adaptive import plan_attack
    from ..outdir import atomic_directory
    from ..runner import evaluate, run_attack, write_attack_outputs
    from ..scenario import simulate

    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    record: dict[str, Any] = {"cell": cell.id, "params": cell.to_json(), "version": __version__}
    try:
        create_attack(cell.attack, **cell.attack_options)  # the user's options are valid on their own
        plan = plan_attack(cell.attack, options=cell.attack_options,  # adaptive to the cell's defense
                           defense=None if cell.defense == "none" else cell.defense)
        attack = create_attack(cell.attack, **plan.options)
        scenario = cell_scenario(cell)
        observation, truth = simulate(scenario)  # the client applies the defense (Scenario.defense)
        reconstruction = run_attack(observation, attack=attack, seed=cell.seed, show_progress=False)
        metrics = {**evaluate(reconstruction, truth, observation=observation), **plan.record()}
        config = {"command": "sweep", "version": __version__, "cell": cell.id, "attack": cell.attack,
                  "options": plan.options, "seed": cell.seed, "defense": cell.defense,
                  "scenario": scenario.to_json()}
        with atomic_directory(Path(cells_dir) / cell.id) as tmp:
            write_attack_outputs(tmp, config=config, metrics=metrics, reconstruction=reconstruction, truth=truth,
                                 observation=observation)
        record.update(status="ok", metrics={k: metrics.get(k) for k in SCALAR_METRICS},
                      attacker_knowledge=plan.knowledge)
    except (GradleakError, RuntimeError) as exc:  # a failing cell is recorded, the sweep goes on
        record.update(status="error", error=f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    record["wall_seconds"] = time.perf_counter() - start
    return record
