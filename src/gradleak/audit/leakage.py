"""The measuring stages of an audit: label recovery and the attack battery over batch sizes.

For every (batch size, seed) one client round is simulated once; every attack of the battery
and the label recovery see the same :class:`Observation`. Attacks never see the ground
truth: it is used afterwards, only to score. Which reconstruction "the attacker" would
believe is decided by a quantity the attacker can compute, the *update mismatch* (cosine
distance between the update the reconstruction would produce and the observed one), so the
verdict never rests on a choice made with the answer in hand.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..attacks import create_attack, recover_labels
from ..attacks.objective import update_mismatch
from ..errors import GradleakError
from ..metrics import label_count_accuracy
from ..metrics.image import psnr
from ..observation import GroundTruth, Observation
from ..runner import evaluate
from ..sweep.aggregate import mean_std
from .battery import Entry
from .progress import AuditProgress

IMAGE_SCORES = ("psnr", "ssim", "fsim", "mse")
# health records (metrics.tabular): accuracy per variable kind, and of the attacker's most / least confident quarter
RECORD_SCORES = ("feature_accuracy", "continuous_accuracy", "categorical_accuracy", "mask_accuracy", "similarity",
                 "fmse", "confidence_q4_accuracy", "confidence_q1_accuracy",
                 "baseline_feature_accuracy", "confidence_q4_baseline")  # a blind guess's, on the same values
SCORES = (*IMAGE_SCORES, *RECORD_SCORES, "label_count_accuracy", "seconds", "mismatch",  # labels as a multiset
          "exact_fraction", "certified_fraction")  # exact attacks: share recovered exactly / certified by the attacker
CURVE_SCORES = ("psnr", "ssim", *RECORD_SCORES, "label_count_accuracy")  # the attacker's pick per batch size


def shown(inputs: torch.Tensor, observation: Observation) -> torch.Tensor:
    """What a picture shows: images clamped to [0, 1]; records (standardised values) as they are."""
    from ..data.schema import RECORD_KINDS

    return inputs if observation.data.get("kind") in RECORD_KINDS else inputs.clamp(0, 1)


@dataclass
class Trial:
    """One simulated client round: what the server saw and (for scoring only) what was private."""

    batch_size: int
    seed: int
    observation: Observation
    truth: GroundTruth


@dataclass
class AttackRecords:
    """Every attack run of the battery, and the pictures kept for the report."""

    records: list[dict[str, Any]] = field(default_factory=list)  # one per (attack, batch size, seed)
    # batch size -> {"truth": tensor, attack name: aligned reconstruction} for the first seed
    pictures: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    # batch size -> {attack name: its confidence per variable, aligned} for attacks that state one (records)
    confidence: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


def batch_scale(batch_size: int) -> float:
    """How much longer an iteration takes at ``batch_size`` than at 1 (small models: sub-linear)."""
    return 1.0 + (batch_size - 1) / 4.0


def blind_guess_psnr(trial: Trial, channel_means: torch.Tensor) -> float:
    """PSNR of a constant image of the data set's mean colour: what 'no leakage' scores."""
    truth = trial.truth.inputs.float()
    guess = channel_means.view(1, -1, 1, 1).expand_as(truth)
    hi = float(trial.observation.data.get("max", 1.0)) - float(trial.observation.data.get("min", 0.0))
    return psnr(guess, truth, data_range=hi).mean


# --------------------------------------------------------------------------- labels
def label_stage(trials: Sequence[Trial]) -> list[dict[str, Any]]:
    """Analytic label recovery (iDLG / LLG) per batch size: share of the batch's labels recovered."""
    per_batch: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for t in trials:
        model = t.observation.build_model()
        estimate = recover_labels(t.observation, model=model, generator=torch.Generator().manual_seed(t.seed))
        per_batch[t.batch_size].append((label_count_accuracy(estimate.labels, t.truth.labels), estimate.method))
    rows = []
    for b in sorted(per_batch):
        accs = [a for a, _ in per_batch[b]]
        mean, std = mean_std(accs)
        rows.append({"batch_size": b, "accuracy": mean, "accuracy_std": std, "seeds": len(accs),
                     "method": sorted({m for _, m in per_batch[b]})})
    return rows


# --------------------------------------------------------------------------- attacks
def attack_units(entry: Entry, batch_size: int) -> float:
    return entry.weight * entry.iterations() * batch_scale(batch_size)


def runs_at(entry: Entry, batch_size: int, max_iterative_batch: int | None) -> bool:
    """Closed-form attacks (and plans marked ``any_batch``) run at every batch size; iterative ones up to the
    budget's limit."""
    return (entry.kind == "closed-form" or entry.any_batch or max_iterative_batch is None
            or batch_size <= max_iterative_batch)


def attack_cell(name: str, options: dict[str, Any], observation: Observation, truth: GroundTruth, seed: int,
                device: str, keep: bool, *, progress: Any) -> tuple[dict[str, Any], tuple[torch.Tensor, Any] | None]:
    """One run of the battery: (record fields, (the aligned reconstruction, its aligned confidence or None)
    when ``keep``).

    Top-level and self-contained (its own generator from ``seed``), so it can run in a worker
    process with the same result. Failures are recorded, never fatal.
    """
    record: dict[str, Any] = {}
    picture = None
    try:
        attack = create_attack(name, **options)
        recon = attack.run(observation, generator=torch.Generator().manual_seed(seed), device=device,
                           progress=progress)
        metrics = evaluate(recon, truth, observation=observation)
        record.update(status="ok", **{k: metrics.get(k) for k in SCORES if k != "mismatch"},
                      label_method=recon.label_method,
                      mismatch=update_mismatch(observation, recon.inputs, recon.labels))
        if keep:
            order = torch.as_tensor(metrics["assignment"])
            picture = (shown(recon.inputs, observation)[order],
                       None if recon.confidence is None else recon.confidence.detach().cpu()[order])
    except (GradleakError, RuntimeError, ValueError) as exc:  # one failing attack never ends the audit
        record.update(status="error", error=f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return record, picture


def attack_stage(trials: Sequence[Trial], entries: Sequence[Entry], *, progress: AuditProgress,
                 device: str = "cpu", max_iterative_batch: int | None = None, workers: int = 1) -> AttackRecords:
    """Run every runnable entry on every trial (in ``workers`` processes when > 1: the same records)."""
    from .parallel import run_jobs

    out = AttackRecords()
    runnable = [e for e in entries if e.skipped is None]
    first_seed: dict[int, int] = {}
    for t in trials:
        first_seed.setdefault(t.batch_size, t.seed)
    cells = [(t, e) for t in trials for e in runnable if runs_at(e, t.batch_size, max_iterative_batch)]
    for t in trials:
        if first_seed[t.batch_size] == t.seed:
            out.pictures[t.batch_size] = {"truth": shown(t.truth.inputs, t.observation)}
    jobs = [(attack_cell, (e.name, e.options, t.observation, t.truth, t.seed, device,
                           first_seed[t.batch_size] == t.seed)) for t, e in cells]
    units = [attack_units(e, t.batch_size) for t, e in cells]
    scales = [e.weight * batch_scale(t.batch_size) for t, e in cells]
    labels = [f"{e.name}, batch {t.batch_size}, seed {t.seed}" for t, e in cells]
    spent = [0.0] * len(cells)
    title = "the battery" if workers <= 1 else f"the battery, {len(cells)} runs on {workers} processes"
    with progress.task("attacks", title, units=sum(units)) as advance_all:
        def advance(j: int, n: int) -> None:
            if workers <= 1:
                progress.label(labels[j])
            step = min(n * scales[j], units[j] - spent[j])
            if step > 0:
                spent[j] += step
                advance_all(step)

        results = run_jobs(jobs, workers=workers, advance=advance)  # the task credits what runs left unreported
    by_trial: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for (t, e), (fields, picture) in zip(cells, results):
        record = {"attack": e.name, "kind": e.kind, "batch_size": t.batch_size, "seed": t.seed, **fields}
        if picture is not None:
            out.pictures[t.batch_size][e.name] = picture[0]
            if picture[1] is not None:
                out.confidence.setdefault(t.batch_size, {})[e.name] = picture[1]
        by_trial[id(t)].append(record)
    for t in trials:
        trial_records = by_trial.get(id(t), [])
        _mark_attacker_choice(trial_records)
        out.records.extend(trial_records)
    return out


def _mark_attacker_choice(records: list[dict[str, Any]]) -> None:
    """The attacker believes the reconstruction with the lowest update mismatch."""
    ok = [r for r in records if r["status"] == "ok" and r.get("mismatch") is not None and math.isfinite(r["mismatch"])]
    for r in records:
        r["chosen"] = False
    if ok:
        min(ok, key=lambda r: r["mismatch"])["chosen"] = True


def summarise(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean +- std over seeds per (attack, batch size), and how often the attacker chose it."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["attack"], r["batch_size"])].append(r)
    rows = []
    for (attack, b), members in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ok = [m for m in members if m["status"] == "ok"]
        row: dict[str, Any] = {"attack": attack, "kind": members[0]["kind"], "batch_size": b, "runs": len(members),
                               "failed": len(members) - len(ok), "chosen": sum(bool(m.get("chosen")) for m in members)}
        for k in SCORES:
            row[k], row[f"{k}_std"] = mean_std([m.get(k) for m in ok])
        errors = sorted({m["error"] for m in members if m["status"] != "ok"})
        if errors:
            row["errors"] = errors
        rows.append(row)
    return rows


def attacker_curve(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per batch size: the scores of the reconstruction the attacker chose, mean +- std over seeds."""
    by_batch: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("chosen"):
            by_batch[r["batch_size"]].append(r)
    rows = []
    for b in sorted(by_batch):
        chosen = by_batch[b]
        row: dict[str, Any] = {"batch_size": b, "seeds": len(chosen), "attacks": sorted({r["attack"] for r in chosen})}
        for k in CURVE_SCORES:
            row[k], row[f"{k}_std"] = mean_std([r.get(k) for r in chosen])
        rows.append(row)
    return rows


def worst_case(summary: Sequence[dict[str, Any]], *, metric: str = "ssim",
               also: Sequence[str] = ("psnr",)) -> list[dict[str, Any]]:
    """Per batch size, the attack with the highest mean ``metric`` *scored with the private data*.

    The defender's worst case: an upper bound the attacker cannot select by itself (it does not
    see the data), reported beside the attacker's pick, never in its place.
    """
    best: dict[int, dict[str, Any]] = {}
    for r in summary:
        if r.get(metric) is not None and (r["batch_size"] not in best or r[metric] > best[r["batch_size"]][metric]):
            best[r["batch_size"]] = r
    return [{"batch_size": b, "attack": r["attack"], metric: r[metric], f"{metric}_std": r[f"{metric}_std"],
             **{k: r.get(k) for a in also for k in (a, f"{a}_std")}} for b, r in sorted(best.items())]
