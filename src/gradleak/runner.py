"""Run an attack on an observation and turn the outcome into the standard run outputs.

Standard outputs of an attack run (DESIGN.md section 3): ``config.json``, ``metrics.json``
(flat keys), ``reconstruction.png`` (truth row above reconstruction row), ``loss.png`` and
``reconstruction.safetensors``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from .attacks import Attack, Reconstruction
from .metrics import evaluate_images
from .observation import GroundTruth, Observation
from .outdir import write_json
from .report.plots import save_image_grid, save_loss_plot
from .data.schema import RECORD_KINDS, RecordSchema, typical_records
from .metrics.tabular import NULL_RECORD_METRICS, evaluate_records
from .metrics.exact import certified_fraction, exact_matched
from .metrics.features import feature_metrics
from .models.taps import layer_inputs
from .report.heatmaps import ordered, save_record_heatmaps


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


def _record_metrics(reconstruction: Reconstruction, truth: GroundTruth | None, *, observation: Observation) -> dict[str, Any]:
    """Health records (tables, time series): FMSE, similarity, feature accuracy (metrics.tabular)."""
    if truth is None:
        return {**NULL_RECORD_METRICS, "note": "no ground truth given: record and label metrics are unavailable"}
    raw = observation.data.get("schema")
    schema = None if raw is None else RecordSchema.from_json(raw)
    mean = (observation.data.get("prior") or {}).get("mean")
    guess = None if schema is None or mean is None else typical_records(schema, mean, shape=tuple(truth.inputs.shape))
    record = evaluate_records(
        reconstruction=reconstruction.inputs, truth=truth.inputs, schema=schema,
        recon_labels=reconstruction.labels, true_labels=truth.labels, confidence=reconstruction.confidence,
        baseline=guess,
    )
    record["exact_fraction"] = exact_matched(reconstruction.inputs, truth.inputs, data_range=None)
    return record


def _record_pictures(directory: Path, *, metrics: dict[str, Any], reconstruction: Reconstruction,
                     truth: GroundTruth | None, schema: dict[str, Any] | None = None) -> None:
    recon = ordered(reconstruction.inputs, metrics.get("assignment"))
    save_record_heatmaps(None if truth is None else truth.inputs, recon, directory / "reconstruction.png",
                         title=f"{reconstruction.attack}: truth vs reconstruction")
    if schema is None or recon.dim() != 2:  # the table is for flat records with a schema
        return
    from .metrics.tabular import hit_matrix
    from .report.record_table import save_record_table

    parsed = RecordSchema.from_json(schema)
    conf = None if reconstruction.confidence is None else \
        ordered(reconstruction.confidence.detach().cpu(), metrics.get("assignment"))
    hits = None if truth is None else hit_matrix(recon, truth.inputs, parsed,
                                                 tolerance=float(metrics.get("continuous_tolerance") or 0.1))
    save_record_table(recon, directory / "records_table.png", schema=parsed, confidence=conf, hits=hits,
                      title=f"{reconstruction.attack}: reconstructed records")


# Metrics and pictures per data kind (Observation.data['kind']); kinds not listed are images.
KIND_METRICS: dict[str, Callable[..., dict[str, Any]]] = {kind: _record_metrics for kind in RECORD_KINDS}
KIND_PICTURES: dict[str, Callable[..., None]] = {kind: _record_pictures for kind in RECORD_KINDS}


def evaluate(reconstruction: Reconstruction, truth: GroundTruth | None, *, observation: Observation) -> dict[str, Any]:
    """The flat ``metrics.json`` record; image metrics are null without ground truth."""
    record: dict[str, Any] = {
        "attack": reconstruction.attack,
        "seconds": reconstruction.seconds,
        "gradient_loss": reconstruction.gradient_loss,
        "iterations": reconstruction.iterations,
        "iterations_used": reconstruction.iterations_used,
        "label_method": reconstruction.label_method,
        "ground_truth": truth is not None,
        **_threat(reconstruction, observation),
        **_features(reconstruction, truth, observation=observation),
    }
    kind = str(observation.data.get("kind", "image"))
    if kind in KIND_METRICS:
        record.update({"data_kind": kind, **KIND_METRICS[kind](reconstruction, truth, observation=observation)})
        return record
    if truth is None:
        record.update({"psnr": None, "ssim": None, "fsim": None, "mse": None, "lpips": None, "label_accuracy": None,
                       "exact_fraction": None, "note": "no ground truth given: image and label metrics are unavailable"})
        return record
    lo, hi = float(observation.data.get("min", 0.0)), float(observation.data.get("max", 1.0))
    metrics = evaluate_images(
        reconstruction=reconstruction.inputs.clamp(lo, hi) - lo, truth=truth.inputs - lo,
        recon_labels=reconstruction.labels, true_labels=truth.labels, data_range=hi - lo,
    )
    record.update(metrics)
    record["exact_fraction"] = exact_matched(reconstruction.inputs.clamp(lo, hi) - lo, truth.inputs - lo,
                                             data_range=hi - lo)
    return record


def _features(reconstruction: Reconstruction, truth: GroundTruth | None, *, observation: Observation) -> dict[str, Any]:
    """When the attack recovered an inner layer's inputs (deep spear): how many exactly, and certified."""
    if reconstruction.features is None or reconstruction.feature_layer is None:
        return {}
    true = None
    if truth is not None:  # the client's forward: its model, mode and batch (BatchNorm statistics included)
        true = layer_inputs(observation.build_model(), truth.inputs, reconstruction.feature_layer)
    return {"feature_layer": reconstruction.feature_layer,
            **feature_metrics(recovered=reconstruction.features, certified=reconstruction.feature_certified,
                              truth=true, num_samples=observation.num_samples)}


def _threat(reconstruction: Reconstruction, observation: Observation) -> dict[str, Any]:
    """The run's assumptions (threat model, attacker knowledge) and the attack's own exactness claim."""
    from .attacks import ATTACKS

    cls = ATTACKS.get(reconstruction.attack) if reconstruction.attack in ATTACKS else None
    return {"threat_model": getattr(cls, "threat_model", "honest"),
            "attacker_knowledge": getattr(cls, "attacker_knowledge", None),
            "certified_fraction": certified_fraction(reconstruction.certified, num_samples=observation.num_samples)}


def write_attack_outputs(
    directory: Path,
    *,
    config: dict[str, Any],
    metrics: dict[str, Any],
    reconstruction: Reconstruction,
    truth: GroundTruth | None,
    observation: Observation | None = None,
) -> None:
    """Write the standard outputs of one attack run into ``directory`` (``observation``: for the
    record schema of a table's picture)."""
    write_json(directory / "config.json", {**config, "attack_summary": reconstruction.summary()})
    write_json(directory / "metrics.json", metrics)
    picture = KIND_PICTURES.get(str(metrics.get("data_kind", "image")))
    if picture is not None:
        schema = None if observation is None else observation.data.get("schema")
        picture(directory, metrics=metrics, reconstruction=reconstruction, truth=truth, schema=schema)
    else:
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

