"""The client's side: look at a received model before training on it.

An imprint block is a layer whose rows are (nearly) scaled copies of one measurement vector,
with biases that place distinct thresholds along it. The check looks at every weight matrix
with at least ``min_rows`` rows (convolutions flattened to one row per output channel):

* ``parallel``: rows whose |cosine| with the layer's dominant direction is at least ``cosine``
  (one rank-1 SVD); an alarm needs ``min_rows`` of them and ``share`` of the layer;
* ``rank_one_share``: the dominant direction's share of the layer's energy (s1^2 / sum s^2):
  random or trained layers spread it, an imprint layer puts nearly all of it in one direction;
  at ``energy`` or above it alarms on its own (rows perturbed to defeat the cosine test);
* ``ladder``: among the parallel rows, how many distinct thresholds ``-b_i / |w_i|`` the biases
  place (an imprint layer's are all distinct: one per bin);
* ``width``: rows per input entry (an imprint layer on a 2,352-pixel image has 1,024 rows).

What it cannot catch: a server that measures with rows that are not parallel (a different
random direction per row, "trap weights"), spreads the block over several layers, hides it
behind a transform the check does not flatten (e.g. an attention or embedding layer), or
perturbs the rows so much that the read-out itself degrades (see docs/malicious.md for the
noise level at which detection stops, and what the attack still recovers there).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import ShapeError
from ..models.base import ModelSpec


@dataclass(frozen=True)
class InspectConfig:
    """Thresholds of the check (defaults measured in benchmarks/imprint_table.py)."""

    min_rows: int = 16  # layers with fewer rows are not examined; an alarm needs this many parallel rows
    cosine: float = 0.9  # |cos| to the dominant direction at which a row counts as a copy of it
    share: float = 0.25  # ... and at least this share of the layer's rows must be copies
    # or: the dominant direction holds this share of the layer's energy (rows hidden under noise;
    # benign layers measured at most 0.121, an imprint layer with relative row noise s holds 1/(1+s^2))
    energy: float = 0.3


@dataclass
class LayerFinding:
    name: str  # state-dict name of the weight
    rows: int
    inputs: int  # entries per row
    parallel: int  # rows nearly parallel to the dominant direction
    rank_one_share: float  # s1^2 / sum s^2
    ladder: int  # distinct thresholds among the parallel rows (needs a bias)
    alarm: bool


@dataclass
class InspectReport:
    verdict: str  # "refuse" (imprint-style structure found) or "no finding"
    layers: list[LayerFinding] = field(default_factory=list)  # every examined layer
    notes: list[str] = field(default_factory=list)

    @property
    def alarm(self) -> bool:
        return self.verdict == "refuse"

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "alarm": self.alarm, "layers": [asdict(f) for f in self.layers],
                "notes": self.notes}


def _bias_for(state: dict[str, torch.Tensor], name: str, rows: int) -> torch.Tensor | None:
    head, _, last = name.rpartition(".")
    key = (head + "." if head else "") + last.replace("weight", "bias")
    bias = state.get(key) if key != name else None
    return bias.detach().double().flatten() if bias is not None and bias.numel() == rows else None


def examine_layer(name: str, weight: torch.Tensor, bias: torch.Tensor | None, config: InspectConfig) -> LayerFinding:
    """One weight matrix (rows x inputs): how many rows copy its dominant direction, and its ladder."""
    w = weight.detach().double().flatten(1)
    rows, inputs = w.shape
    norms = w.norm(dim=1)
    total = float((norms ** 2).sum())
    if total == 0.0 or not math.isfinite(total):
        return LayerFinding(name, rows, inputs, 0, 0.0, 0, False)
    _, s, v = torch.svd_lowrank(w, q=min(6, rows, inputs), niter=6)
    direction = v[:, 0]
    cos = (w @ direction) / norms.clamp(min=1e-300)
    parallel = (cos.abs() >= config.cosine) & (norms > 0)
    count = int(parallel.sum())
    ladder = 0
    if bias is not None and count:
        t = (-bias[parallel] / (w[parallel] @ direction)).sort().values
        spread = float(t[-1] - t[0]) or 1.0
        ladder = 1 + int((t.diff() > 1e-9 * spread).sum())
    share = float(s[0] ** 2) / total
    alarm = count >= max(config.min_rows, config.share * rows) or share >= config.energy
    return LayerFinding(name, rows, inputs, count, share, ladder, alarm)


def inspect_state(state: dict[str, torch.Tensor], *, spec: ModelSpec | None = None,
                  config: InspectConfig = InspectConfig()) -> InspectReport:
    """Look for imprint-style layers in a state dict; with ``spec``, also check it fits the architecture."""
    notes: list[str] = []
    if spec is not None:
        _check_fits(state, spec)
        notes.append(f"architecture {spec.name!r} {spec.options or ''}: every tensor fits it".rstrip())
    findings = []
    for name, t in state.items():
        if (not t.is_floating_point() or t.dim() < 2 or "weight" not in name.rpartition(".")[2]
                or t.shape[0] < config.min_rows):
            continue
        if not bool(torch.isfinite(t).all()):
            notes.append(f"{name} holds NaN or Inf")
            continue
        findings.append(examine_layer(name, t, _bias_for(state, name, t.shape[0]), config))
    flagged = [f for f in findings if f.alarm]
    for f in flagged:
        notes.append(f"{f.name}: {f.parallel} of {f.rows} rows are copies of one direction (|cos| >= {config.cosine}), "
                     f"which holds {f.rank_one_share:.0%} of the layer's energy, "
                     f"{f.ladder} distinct bias thresholds, {f.rows / f.inputs:.2f} rows per input entry: "
                     "an imprint block (a malicious server can read samples out of the update)")
    notes.append(f"{len(findings)} layer(s) with >= {config.min_rows} rows examined")
    return InspectReport("refuse" if flagged else "no finding", findings, notes)


def _check_fits(state: dict[str, torch.Tensor], spec: ModelSpec) -> None:
    from ..models import create_model

    with torch.device("meta"):  # shapes only: a hostile spec cannot make us allocate a huge model
        reference = create_model(spec).state_dict()
    missing, extra = sorted(set(reference) - set(state)), sorted(set(state) - set(reference))
    if missing or extra:
        raise ShapeError(f"model file does not match {spec.name!r}: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, t in state.items():
        if tuple(t.shape) != tuple(reference[k].shape):
            raise ShapeError(f"model file tensor {k!r} has shape {tuple(t.shape)} but {spec.name!r} expects "
                             f"{tuple(reference[k].shape)}")
