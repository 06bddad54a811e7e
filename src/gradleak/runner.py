"""Run an attack on an observation and turn the outcome into the standard run outputs.

Standard outputs of an attack run (DESIGN.md section 3): ``config.json``, ``metrics.json``
(flat keys), ``reconstruction.png`` (truth row above reconstruction row), ``loss.png`` and
``reconstruction.safetensors``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .attacks import Attack, Reconstruction
from .metrics import evaluate_images
from .observation import GroundTruth, Observation
from .outdir import write_json
from .report.plots import save_image_grid, save_loss_plot


def run_attack(
    observation: Observation,
    *,
    attack: Attack,
    seed: int = 0,
    device: str = "cpu",
    show_progress: bool = True,
) -> Reconstruction:
    """Run ``attack`` (from :func:`create_attack`) with a progress bar showing the ETA."""
    generator = torch.Generator().manual_seed(seed)
    with tqdm(
        total=attack.total_iterations(), desc=attack.name, unit="it", file=sys.stderr,
        disable=not show_progress, dynamic_ncols=True, leave=False,
    ) as bar:
        return attack.run(observation, generator=generator, device=device, progress=bar.update)


def evaluate(reconstruction: Reconstruction, truth: GroundTruth | None, *, observation: Observation) -> dict[str, Any]:
    """The flat ``metrics.json`` record; image metrics are null without ground truth."""
    record: dict[str, Any] = {
        "attack": reconstruction.attack,
        "seconds": reconstruction.seconds,
        "gradient_loss": reconstruction.gradient_loss,
        "iterations": reconstruction.iterations,
        "label_method": reconstruction.label_method,
        "ground_truth": truth is not None,
    }
    if truth is None:
        record.update({"psnr": None, "ssim": None, "mse": None, "lpips": None, "label_accuracy": None,
                       "note": "no ground truth given: image and label metrics are unavailable"})
        return record
    lo, hi = float(observation.data.get("min", 0.0)), float(observation.data.get("max", 1.0))
    metrics = evaluate_images(
        reconstruction=reconstruction.inputs.clamp(lo, hi) - lo, truth=truth.inputs - lo,
        recon_labels=reconstruction.labels, true_labels=truth.labels, data_range=hi - lo,
    )
    record.update(metrics)
    return record


def write_attack_outputs(
    directory: Path,
    *,
    config: dict[str, Any],
    metrics: dict[str, Any],
    reconstruction: Reconstruction,
    truth: GroundTruth | None,
) -> None:
    """Write the standard outputs of one attack run into ``directory``."""
    write_json(directory / "config.json", {**config, "attack_summary": reconstruction.summary()})
    write_json(directory / "metrics.json", metrics)
    recon = reconstruction.inputs.clamp(0, 1)
    if truth is not None:
        order = torch.as_tensor(metrics["assignment"], dtype=torch.long)
        rows, labels = [truth.inputs.clamp(0, 1), recon[order]], ["truth", reconstruction.attack]
    else:
        rows, labels = [recon], [reconstruction.attack]
    save_image_grid(rows, directory / "reconstruction.png", row_labels=labels)
    save_loss_plot(reconstruction.restart_traces, directory / "loss.png",
                   title=f"{reconstruction.attack}: gradient loss", chosen=reconstruction.chosen_restart)
    reconstruction.save(directory)

