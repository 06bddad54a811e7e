"""Shared parts of the CI-Net benchmarks (``cinet_table.py``, ``cinet_width.py``).

One *cell* is one attack on one simulated client batch: the scenario is built from
(batch size, seed), the attack runs with the budget the caller gives, and the ground truth is
used only afterwards, to score (``runner.evaluate``: Hungarian assignment, then SSIM, FSIM,
PSNR, LPIPS = null without weights). Finished cells go to an fsync'ed JSON-lines journal
(``gradleak.sweep.journal.Journal``), so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from gradleak.attacks import create_attack
from gradleak.observation import GroundTruth, Observation
from gradleak.priors import attacker_data
from gradleak.runner import evaluate, run_attack
from gradleak.scenario import Scenario, simulate
from gradleak.sweep.aggregate import mean_std, pm
from gradleak.sweep.journal import Journal

METRICS = ("ssim", "fsim", "psnr", "lpips", "label_accuracy", "gradient_loss", "cpu_seconds", "wall_seconds")


@dataclass(frozen=True)
class Setting:
    """The victim every cell attacks (see docs/cinet.md for why these)."""

    name: str  # key in SETTINGS, written into every result file
    dataset: str  # registry name of the client's data
    model: str  # registry name of the victim
    options: tuple[tuple[str, Any], ...] = ()  # victim model options as (name, value) pairs (hashable)
    trained_steps: int = 0  # pre-training of the global model on data disjoint from the client's
    image_size: int = 32  # the paper's CIFAR-10 resolution
    share_labels: bool = True  # the paper assumes known labels (Sec. 2.1)

    def scenario(self, *, batch_size: int, seed: int) -> Scenario:
        return Scenario(dataset=self.dataset, model=self.model, batch_size=batch_size, seed=seed,
                        image_size=self.image_size, trained_steps=self.trained_steps, share_labels=self.share_labels,
                        model_options=dict(self.options))

    def describe(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.options) or "defaults"
        trained = f"pre-trained {self.trained_steps} steps" if self.trained_steps else "untrained"
        return f"{self.dataset} {self.image_size} px, {self.model} ({options}), {trained}, labels known"


#: ``allred``: nine-class histology against a tanh MLP whose update pins a batch of 32 (the
#: default since 2026-12-02: the first setting here where any attack recovers a large batch);
#: ``binary``: the two-class histology against IG's ConvNet w8 of the earlier tables, where the
#: update does not pin the batch (docs/cinet.md).
SETTINGS: dict[str, Setting] = {
    "allred": Setting(name="allred", dataset="histology-allred", model="mlp",
                      options=(("activation", "tanh"), ("init_gain", 4.0))),
    "binary": Setting(name="binary", dataset="histology", model="convnet", options=(("width", 8),), trained_steps=200),
}
DEFAULT_SETTING = "allred"


def ensure_prior(path: Path, *, setting: Setting, steps: int) -> Path:
    """Train the GIAS prior on the attacker's own split with ``gradleak prior train`` if missing."""
    if not (path / "prior.json").exists():
        cmd = [sys.executable, "-m", "gradleak.cli", "prior", "train", "--dataset", setting.dataset,
               "--image-size", str(setting.image_size), "--steps", str(steps), "--seed", "0",
               "--quiet", "--out", str(path)]
        print("training the GIAS prior:", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True)
    return path


@functools.lru_cache(maxsize=2)
def client(setting: Setting, batch_size: int, seed: int) -> tuple[Observation, GroundTruth]:
    """The simulated client round (batch disjoint from the attacker's split), shared by the
    attacks of one (batch, seed): pre-training runs once, every attack sees the same update."""
    exclude = attacker_data(setting.dataset, image_size=setting.image_size).client_exclusion
    return simulate(setting.scenario(batch_size=batch_size, seed=seed), exclude=exclude)


def run_cell(*, setting: Setting, attack: str, options: dict[str, Any], batch_size: int, seed: int) -> dict[str, Any]:
    """Attack the client's update, then score against its batch."""
    observation, truth = client(setting, batch_size, seed)
    instance = create_attack(attack, **options)
    wall, cpu = time.perf_counter(), time.process_time()
    reconstruction = run_attack(observation, attack=instance, seed=seed, show_progress=False)
    record = evaluate(reconstruction, truth, observation=observation)
    record.update(cpu_seconds=time.process_time() - cpu, wall_seconds=time.perf_counter() - wall,
                  notes=reconstruction.notes, victim_parameters=sum(v.numel() for v in observation.update.values()))
    return {k: v for k, v in record.items() if not k.endswith("_per_sample") and k != "assignment"}


def run_cells(journal: Journal, cells: list[tuple[str, dict[str, Any], Callable[[], dict[str, Any]]]]) -> None:
    """Run every (key, params, thunk) cell that the journal does not hold yet, in order.

    The journal file is re-read before each cell, so several processes (e.g. one per batch
    size) can share it without running a cell twice (appends are single O_APPEND writes)."""
    todo = [c for c in cells if c[0] not in journal.done]
    print(f"{len(cells) - len(todo)} of {len(cells)} cells already done", flush=True)
    for i, (key, params, thunk) in enumerate(todo, start=1):
        if key in Journal(journal.path).done:
            continue
        metrics = thunk()
        journal.append({"cell": key, "params": params, "metrics": metrics})
        print(f"[{i}/{len(todo)}] {key}: ssim {metrics['ssim']:.3f} fsim {metrics['fsim']:.3f} "
              f"psnr {metrics['psnr']:.2f} ({metrics['cpu_seconds']:.0f} s CPU)", flush=True)


def summarise(records: list[dict[str, Any]], group: Callable[[dict[str, Any]], tuple]) -> dict[tuple, dict[str, Any]]:
    """Mean and sample std over seeds of every metric, per group of cells."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(group(r["params"]), []).append(r)
    out = {}
    for key, members in groups.items():
        row: dict[str, Any] = {"seeds": sorted(m["params"]["seed"] for m in members)}
        for metric in METRICS:
            row[metric], row[f"{metric}_std"] = mean_std([m["metrics"].get(metric) for m in members])
        out[key] = row
    return out


def cell(row: dict[str, Any], metric: str, digits: int = 2) -> str:
    return pm(row.get(metric), row.get(f"{metric}_std"), digits) if row.get(metric) is not None else "n/a"


def setup_threads(threads: int) -> None:
    """Few threads: the CPU is shared (see the benchmark docstrings)."""
    torch.set_num_threads(threads)
