"""``gradleak report DIR``: a sweep's journal as mean +- std over seeds, tables and plots."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from ..errors import GradleakError
from .journal import Journal

METRICS = ("psnr", "ssim", "label_accuracy", "label_count_accuracy", "seconds")
GROUP_KEYS = ("dataset", "model", "attack", "defense", "batch_size")


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1) of the finite values; (None, None) if none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std


def _group_key(params: dict[str, Any]) -> tuple:
    """Cells that differ only by seed share a group (options and scenario included)."""
    extra = json.dumps({"options": params.get("attack_options", {}), "scenario": params.get("scenario", {})},
                       sort_keys=True)
    return (*(params[k] for k in GROUP_KEYS), extra)


# What a record's params must hold for grouping, and their JSON types.
PARAM_TYPES: dict[str, type] = {"dataset": str, "model": str, "attack": str, "defense": str, "batch_size": int,
                                "seed": int}


def _check_record(r: dict[str, Any]) -> None:
    """Refuse a journal record that cannot be grouped or averaged, naming its cell and field."""
    from ..errors import DataError

    params = r.get("params")
    if not isinstance(params, dict):
        raise DataError(f"results record of cell {r.get('cell')!r} has no 'params' object")
    for key, kind in PARAM_TYPES.items():
        if not isinstance(params.get(key), kind) or isinstance(params.get(key), bool):
            raise DataError(f"results record of cell {r['cell']!r}: params {key!r} must be a {kind.__name__}, "
                            f"got {params.get(key)!r}")
    if r.get("status") == "ok":
        metrics = r.get("metrics")
        if not isinstance(metrics, dict):
            raise DataError(f"results record of cell {r['cell']!r} has status ok but no 'metrics' object")
        for metric in METRICS:
            v = metrics.get(metric)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise DataError(f"results record of cell {r['cell']!r}: metric {metric!r} must be a number or "
                                f"null, got {v!r}")


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per group: count of seeds, failures, and mean/std (sample std, n-1) per metric."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        _check_record(r)
        groups[_group_key(r["params"])].append(r)
    rows = []
    for key, members in groups.items():
        ok = [m for m in members if m.get("status") == "ok"]
        row: dict[str, Any] = dict(zip(GROUP_KEYS, key[:-1]))
        row.update(json.loads(key[-1]))
        row["seeds"] = sorted(m["params"]["seed"] for m in ok)
        row["failed"] = len(members) - len(ok)
        for metric in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std([m["metrics"].get(metric) for m in ok])
        rows.append(row)
    rows.sort(key=lambda r: tuple(str(r[k]) if k != "batch_size" else f"{r[k]:08d}" for k in GROUP_KEYS))
    return rows


def pm(mean: float | None, std: float | None, digits: int = 2) -> str:
    return "n/a" if mean is None else f"{mean:.{digits}f} +- {std:.{digits}f}"


def write_sweep_report(directory: str | Path) -> list[dict[str, Any]]:
    """Aggregate ``DIR/results.jsonl`` into ``DIR/report/`` (summary.json/.md, plot, report.html)."""
    from ..outdir import atomic_directory, write_json
    from ..report.charts import save_series_plot
    from ..report.html import HtmlReport
    from .run import RESULTS_FILE

    directory = Path(directory)
    path = directory / RESULTS_FILE
    if not path.is_file():
        raise GradleakError(f"{directory} is not a sweep directory: {RESULTS_FILE} is missing")
    records = Journal(path).records
    if not records:
        raise GradleakError(f"{path} holds no finished cells yet")
    rows = aggregate(records)
    header = ["dataset", "model", "attack", "defense", "batch", "seeds", "failed", "PSNR dB", "SSIM", "label acc",
              "labels (multiset)", "seconds"]
    table = [[r["dataset"], r["model"], r["attack"], r["defense"], r["batch_size"], len(r["seeds"]), r["failed"],
              pm(r["psnr_mean"], r["psnr_std"]), pm(r["ssim_mean"], r["ssim_std"], 3),
              pm(r["label_accuracy_mean"], r["label_accuracy_std"]),
              pm(r["label_count_accuracy_mean"], r["label_count_accuracy_std"]), pm(r["seconds_mean"], r["seconds_std"], 1)]
             for r in rows]
    series: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for r in rows:
        if r["psnr_mean"] is None:
            continue
        name = f"{r['dataset']}/{r['model']}/{r['attack']}" + ("" if r["defense"] == "none" else f" [{r['defense']}]")
        xs, ms, ss = series.setdefault(name, ([], [], []))
        xs.append(r["batch_size"]), ms.append(r["psnr_mean"]), ss.append(r["psnr_std"])
    with atomic_directory(directory / "report") as tmp:
        write_json(tmp / "summary.json", {"rows": rows, "cells": len(records)})
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table]
        (tmp / "summary.md").write_text("\n".join(lines) + "\n")
        save_series_plot(series, tmp / "psnr_vs_batch.png", title="Attack PSNR vs client batch size (mean +- std over seeds)",
                         xlabel="client batch size", ylabel="PSNR (dB)")
        page = HtmlReport("gradleak sweep report")
        page.heading("Sweep report", level=1)
        page.paragraph(f"{len(records)} cells from {path}; mean +- sample standard deviation over seeds.", css="muted")
        page.table(header, table)
        page.image(tmp / "psnr_vs_batch.png", caption="Attack PSNR vs client batch size")
        page.write(tmp / "report.html")
    return rows
