"""Metrics for reconstructed health records, after Hungarian matching of rows.

Records are compared in the model's input space (continuous columns standardised, one-hot and
binary columns 0/1), where the medical replication study reports them:

- ``fmse``: mean squared error over every entry (feature-space MSE);
- ``similarity``: cosine similarity of each matched record pair (flattened), batch mean;
- ``feature_accuracy``: share of variables recovered, per sample and time step: a categorical
  variable counts if its arg-max category is right, a binary one (observation masks) if it is on
  the right side of 0.5, a continuous one if it is within ``tolerance`` (in standard deviations
  of the attacker-visible normalisation, default 0.1) of the truth;
- ``continuous_accuracy``, ``categorical_accuracy``, ``mask_accuracy``: the same per kind;
- ``confidence_q1_accuracy`` .. ``confidence_q4_accuracy``: when the attack states its own
  confidence per variable (tableak), the variables ranked by it and cut into four equal parts,
  q1 the least and q4 the most confident, and the feature accuracy within each part (ties in
  confidence keep column order). A useful confidence has q4 well above q1;
- ``baseline_feature_accuracy`` (and ``confidence_q1_baseline`` .. ``q4``): given a blind guess
  (``data.schema.typical_records``: the attacker's column means and most frequent categories), its
  accuracy overall and on the same confidence quarters: the share an attacker gets right without
  the update (many binary columns are mostly 0), so a score means something only above it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..data.schema import RecordSchema, build_schema
from .matching import LabelsLike, assign, label_accuracy, require_finite, require_same_shape

CONTINUOUS_TOLERANCE = 0.1  # |error| <= 0.1 std counts as recovered (about 1.5 beats/min of heart rate)


def fmse(reconstruction: Tensor, truth: Tensor) -> float:
    """Mean squared error over all entries of aligned records."""
    return float(((reconstruction.double() - truth.double()) ** 2).mean())


def similarity(reconstruction: Tensor, truth: Tensor) -> Tensor:
    """Per-sample cosine similarity of aligned, flattened records (float64)."""
    a, b = reconstruction.flatten(1).double(), truth.flatten(1).double()
    return torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12)


def feature_hits(reconstruction: Tensor, truth: Tensor, schema: RecordSchema, *, tolerance: float) -> dict[str, Tensor]:
    """Boolean hit tensors per variable kind, each ``rows x variables`` (rows = samples x steps)."""
    r = reconstruction.reshape(-1, reconstruction.shape[-1]).double()
    t = truth.reshape(-1, truth.shape[-1]).double()
    hits: dict[str, list[Tensor]] = {"continuous": [], "categorical": [], "binary": []}
    for f in schema.features:
        if f.kind == "categorical":
            hit = r[:, f.start:f.stop].argmax(1) == t[:, f.start:f.stop].argmax(1)
        elif f.kind == "binary":
            hit = (r[:, f.start] > 0.5) == (t[:, f.start] > 0.5)
        else:
            hit = (r[:, f.start] - t[:, f.start]).abs() <= tolerance
        hits[f.kind].append(hit)
    return {k: torch.stack(v, dim=1) for k, v in hits.items() if v}


def hit_matrix(reconstruction: Tensor, truth: Tensor, schema: RecordSchema, *, tolerance: float) -> Tensor:
    """Boolean ``rows x variables`` in schema feature order (rows = samples x steps)."""
    r = reconstruction.reshape(-1, reconstruction.shape[-1]).double()
    t = truth.reshape(-1, truth.shape[-1]).double()
    columns = []
    for f in schema.features:
        if f.kind == "categorical":
            columns.append(r[:, f.start:f.stop].argmax(1) == t[:, f.start:f.stop].argmax(1))
        elif f.kind == "binary":
            columns.append((r[:, f.start] > 0.5) == (t[:, f.start] > 0.5))
        else:
            columns.append((r[:, f.start] - t[:, f.start]).abs() <= tolerance)
    return torch.stack(columns, dim=1)


def confidence_quartiles(hits: Tensor, confidence: Tensor) -> dict[str, float]:
    """Accuracy within each quarter of the variables ranked by the attack's confidence."""
    if hits.shape != confidence.shape:
        raise ValueError(f"confidence has shape {tuple(confidence.shape)}, the hits {tuple(hits.shape)}")
    order = torch.argsort(confidence.flatten().double(), stable=True)
    ranked = hits.flatten()[order].double()
    parts = torch.tensor_split(ranked, 4)
    out = {f"confidence_q{i + 1}_accuracy": (float(p.mean()) if p.numel() else None) for i, p in enumerate(parts)}
    bounds = confidence.flatten().double()[order]
    out["confidence_quartile_bounds"] = [float(bounds[int(q * (len(bounds) - 1))]) for q in (0.25, 0.5, 0.75)]
    return out


def _share(hits: Tensor | None) -> float | None:
    return None if hits is None else float(hits.double().mean())


def evaluate_records(
    *,
    reconstruction: Tensor,
    truth: Tensor,
    schema: RecordSchema | None = None,
    recon_labels: LabelsLike | None = None,
    true_labels: LabelsLike | None = None,
    tolerance: float = CONTINUOUS_TOLERANCE,
    confidence: Tensor | None = None,
    baseline: Tensor | None = None,
) -> dict[str, Any]:
    """Flat metrics for ``metrics.json``; ``assignment[i]`` is the reconstruction matched to truth ``i``.

    Without a schema every column counts as continuous. ``confidence`` (the attack's, shaped
    ``reconstruction.shape[:-1] + (variables,)``) adds the accuracy per confidence quartile;
    ``baseline`` (a blind guess shaped like ``truth``, rows in truth order) adds its accuracy.
    """
    require_same_shape(reconstruction, truth)
    require_finite("reconstruction", reconstruction)
    require_finite("truth", truth)
    if schema is None:
        schema = build_schema([(f"column {i}", "continuous", ()) for i in range(truth.shape[-1])], time_steps=None)
    perm = assign(reconstruction, truth)
    matched = reconstruction.detach().cpu()[perm]
    true = truth.detach().cpu()
    hits = feature_hits(matched, true, schema, tolerance=tolerance)
    every = torch.cat(list(hits.values()), dim=1)
    sims = similarity(matched, true)
    record: dict[str, Any] = {
        "fmse": fmse(matched, true),
        "similarity": float(sims.mean()),
        "feature_accuracy": _share(every),
        "continuous_accuracy": _share(hits.get("continuous")),
        "categorical_accuracy": _share(hits.get("categorical")),
        "mask_accuracy": _share(hits.get("binary")),
        "continuous_tolerance": tolerance,
        "per_sample_fmse": [float(v) for v in ((matched.double() - true.double()) ** 2).flatten(1).mean(1)],
        "per_sample_similarity": [float(v) for v in sims],
        "assignment": perm.tolist(),
        "label_accuracy": None,
    }
    base_hits = None
    if baseline is not None:
        require_same_shape(baseline, truth)
        base_hits = hit_matrix(baseline.detach().cpu(), true, schema, tolerance=tolerance)
        record["baseline_feature_accuracy"] = _share(base_hits)
    if confidence is not None:
        conf = confidence.detach().cpu()[perm].reshape(-1, len(schema.features))
        record.update(confidence_quartiles(hit_matrix(matched, true, schema, tolerance=tolerance), conf))
        if base_hits is not None:
            record.update({k.replace("_accuracy", "_baseline"): v for k, v in
                           confidence_quartiles(base_hits.reshape(conf.shape), conf).items() if k.endswith("_accuracy")})
    if recon_labels is not None and true_labels is not None:
        record["label_accuracy"] = label_accuracy(recon_labels, true_labels, perm)
    return record


NULL_RECORD_METRICS = {
    "fmse": None, "similarity": None, "feature_accuracy": None, "continuous_accuracy": None,
    "categorical_accuracy": None, "mask_accuracy": None, "label_accuracy": None, "baseline_feature_accuracy": None,
}
