"""Realistic client rounds (issue #21): does GradInversion's BatchNorm prior R_BN help IG?

Victims with BatchNorm on histology 32 px: Inverting Gradients' ConvNet and a CIFAR-style
ResNet-18 (small widths for CPU). The client runs one FedAvg round (``--local-steps`` SGD steps
over its batch, lr 0.01) and returns its BatchNorm buffers with the update. Three attackers, all
with the same iterations, restarts and seed:

* ``ig``: Inverting Gradients as published (cosine + TV);
* ``ig+rbn-running``: + R_BN towards the running statistics the server sent;
* ``ig+rbn-shared``: + R_BN towards the batch statistics extracted from the returned buffers
  (train mode only: an eval-mode client's buffers do not move, the cell is skipped).

Axes: model, batch size, BatchNorm mode (eval / train), untrained or trained (``--trained-steps``
Adam steps on data disjoint from the client's batch), seeds. The R_BN weight is chosen per
(model, mode, trained, source) on a tuning seed (100, never an evaluation seed) at batch 8 by
the final *gradient* loss, which the attacker can compute (never PSNR).

    nice python benchmarks/realistic_rounds.py --quick     # ConvNet, batch 1/8, train mode (what CPU affords)
    nice python benchmarks/realistic_rounds.py             # the issue's full grid (a GPU's worth of work)

Results: benchmarks/results/realistic_rounds/{tuning.jsonl,runs.jsonl,table.json,table.md}; rerunning
skips the cells already in runs.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from gradleak.attacks import create_attack
from gradleak.fl.protocol import Protocol
from gradleak.runner import evaluate
from gradleak.scenario import Scenario, simulate
from gradleak.sweep.aggregate import mean_std
from _runs import append_row, load_rows  # benchmarks/_runs.py (the script's own folder is on sys.path)

OUT = Path(__file__).parent / "results" / "realistic_rounds"
METHODS = {  # name -> R_BN source (None: plain IG)
    "ig": None,
    "ig+rbn-running": "running",
    "ig+rbn-shared": "shared",
}
TUNING_SEED = 100
TUNING_BATCH = 8


@dataclass(frozen=True)
class Grid:
    models: dict[str, tuple[str, dict]]  # label -> (registry name, options)
    batches: tuple[int, ...]
    modes: tuple[bool, ...]  # client BatchNorm in train mode?
    trained: tuple[int, ...]  # pre-training steps (0 = untrained)
    seeds: tuple[int, ...]
    weights: tuple[float, ...]  # R_BN weights the tuning chooses from
    iterations: int


FULL = Grid(models={"convnet-w16": ("convnet", {"width": 16}), "resnet18-w8": ("resnet18", {"width": 8})},
            batches=(1, 4, 8, 16), modes=(False, True), trained=(0, 300), seeds=(0, 1, 2),
            weights=(0.01, 0.1, 1.0), iterations=600)
QUICK = Grid(models={"convnet-w8": ("convnet", {"width": 8})}, batches=(1, 8), modes=(True,), trained=(0, 300),
             seeds=(0, 1, 2), weights=(0.1, 1.0), iterations=300)


def scenario(model: tuple[str, dict], *, batch: int, train_mode: bool, trained: int, seed: int,
             local_steps: int) -> Scenario:
    local_batch = None if local_steps == 1 else max(1, batch // local_steps)
    return Scenario(dataset="histology", model=model[0], model_options=dict(model[1]), image_size=32,
                    batch_size=batch, train_mode=train_mode, trained_steps=trained, seed=seed, share_buffers=True,
                    protocol=Protocol(name="fedavg", lr=0.01, local_epochs=1, local_batch_size=local_batch))


def run_cell(grid: Grid, *, model: str, method: str, batch: int, train_mode: bool, trained: int, seed: int,
             weight: float, local_steps: int) -> dict:
    observation, truth = simulate(scenario(grid.models[model], batch=batch, train_mode=train_mode, trained=trained,
                                           seed=seed, local_steps=local_steps))
    options: dict = {"iterations": grid.iterations, "restarts": 1}
    if METHODS[method] is not None:
        options.update(bn_weight=weight, bn_stats=METHODS[method])
    rec = create_attack("ig", **options).run(observation, generator=torch.Generator().manual_seed(seed))
    m = evaluate(rec, truth, observation=observation)
    return {"model": model, "method": method, "batch_size": batch, "train_mode": train_mode, "trained_steps": trained,
            "seed": seed, "local_steps": local_steps, "bn_weight": options.get("bn_weight"),
            "iterations": grid.iterations, "iterations_used": rec.iterations_used, "psnr": m["psnr"],
            "ssim": m["ssim"], "label_accuracy": m["label_accuracy"], "gradient_loss": rec.gradient_loss,
            "seconds": rec.seconds, "notes": rec.notes}


def _ms(values: list, digits: int) -> str:
    m, s = mean_std(values)
    return "-" if m is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def chosen_weight(tuning: list[dict], *, model: str, method: str, train_mode: bool, trained: int) -> float | None:
    rows = [r for r in tuning if (r["model"], r["method"], r["train_mode"], r["trained_steps"]) ==
            (model, method, train_mode, trained)]
    return min(rows, key=lambda r: r["gradient_loss"])["bn_weight"] if rows else None


def applicable(method: str, train_mode: bool) -> bool:
    return not (METHODS[method] == "shared" and not train_mode)


def tables(out: Path) -> str:
    runs, tuning = load_rows(out / "runs.jsonl"), load_rows(out / "tuning.jsonl")
    keys = sorted({(r["model"], r["train_mode"], r["trained_steps"], r["batch_size"], r["local_steps"]) for r in runs})
    lines = ["| model | BN mode | trained steps | batch | local steps | method | seeds | R_BN weight | PSNR (dB) | SSIM | "
             "gradient loss | seconds |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summary: list[dict] = []
    for model, train_mode, trained, batch, steps in keys:
        for method in METHODS:
            rows = [r for r in runs if (r["model"], r["train_mode"], r["trained_steps"], r["batch_size"],
                                        r["local_steps"], r["method"]) == (model, train_mode, trained, batch, steps, method)]
            if not rows:
                continue
            cell = {"model": model, "train_mode": train_mode, "trained_steps": trained, "batch_size": batch,
                    "local_steps": steps, "method": method, "seeds": [r["seed"] for r in rows],
                    "bn_weight": rows[0]["bn_weight"], "iterations": rows[0]["iterations"],
                    **{k: mean_std([r[k] for r in rows]) for k in ("psnr", "ssim", "gradient_loss", "seconds")}}
            summary.append(cell)
            weight = "-" if cell["bn_weight"] is None else f"{cell['bn_weight']:g}"
            lines.append(f"| {model} | {'train' if train_mode else 'eval'} | {trained} | {batch} | {steps} | {method} | "
                         f"{len(rows)} | {weight} | {_ms([r['psnr'] for r in rows], 2)} | "
                         f"{_ms([r['ssim'] for r in rows], 3)} | {_ms([r['gradient_loss'] for r in rows], 3)} | "
                         f"{_ms([r['seconds'] for r in rows], 0)} |")
    gains = []
    for cell in summary:
        if cell["method"] == "ig":
            continue
        base = next((c for c in summary if c["method"] == "ig" and all(c[k] == cell[k] for k in
                     ("model", "train_mode", "trained_steps", "batch_size", "local_steps"))), None)
        if base and base["psnr"][0] is not None and cell["psnr"][0] is not None:
            gains.append({**{k: cell[k] for k in ("model", "train_mode", "trained_steps", "batch_size", "local_steps",
                                                  "method")}, "psnr_gain": cell["psnr"][0] - base["psnr"][0]})
    if gains:
        lines += ["", "PSNR gain over plain IG (mean over seeds):", "",
                  "| model | BN mode | trained steps | batch | method | gain (dB) |", "|---|---|---|---|---|---|"]
        lines += [f"| {g['model']} | {'train' if g['train_mode'] else 'eval'} | {g['trained_steps']} | {g['batch_size']} "
                  f"| {g['method']} | {g['psnr_gain']:+.2f} |" for g in gains]
    if tuning:
        lines += ["", f"R_BN weight tuning (seed {TUNING_SEED}, batch {TUNING_BATCH}; chosen by gradient loss, PSNR "
                      "shown but not used):", "",
                  "| model | BN mode | trained steps | method | weight | gradient loss | PSNR (not used) |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {'train' if r['train_mode'] else 'eval'} | {r['trained_steps']} | {r['method']} | "
                  f"{r['bn_weight']:g} | {r['gradient_loss']:.4f} | {r['psnr']:.2f} |" for r in tuning]
    (out / "table.json").write_text(json.dumps({"cells": summary, "gains": gains, "tuning": tuning}, indent=1) + "\n")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reduced grid CPU affords (ConvNet, batch 1/8, train)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--iterations", type=int, default=None, help="IG iterations (default: the grid's)")
    parser.add_argument("--trained-steps", type=int, nargs="+", default=None, help="pre-training steps (0 = untrained)")
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--modes", choices=("eval", "train"), nargs="+", default=None, help="client BatchNorm modes")
    parser.add_argument("--local-steps", type=int, default=1, help="client SGD steps in its round (splits the batch)")
    parser.add_argument("--weight", type=float, default=None, help="skip tuning: use this R_BN weight")
    parser.add_argument("--minutes", type=float, default=None, help="stop starting cells after this long")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    grid = QUICK if args.quick else FULL
    grid = Grid(**{**grid.__dict__, **{k: v for k, v in (("iterations", args.iterations),) if v is not None},
                   **({"trained": tuple(args.trained_steps)} if args.trained_steps else {}),
                   **({"batches": tuple(args.batches)} if args.batches else {}),
                   **({"modes": tuple(m == "train" for m in args.modes)} if args.modes else {})})
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    tuning = load_rows(args.out / "tuning.jsonl")
    done = {(r["model"], r["method"], r["batch_size"], r["train_mode"], r["trained_steps"], r["seed"],
             r["local_steps"]) for r in load_rows(args.out / "runs.jsonl")}

    def over_budget() -> bool:
        return args.minutes is not None and (time.time() - start) / 60 > args.minutes

    for model in grid.models:
        for trained in grid.trained:
            for train_mode in grid.modes:
                weights = {}
                for method, source in METHODS.items():
                    if source is None or not applicable(method, train_mode):
                        continue
                    if args.weight is not None:
                        weights[method] = args.weight
                        continue
                    for w in grid.weights:
                        key = (model, method, train_mode, trained, w)
                        if not any((r["model"], r["method"], r["train_mode"], r["trained_steps"], r["bn_weight"]) == key
                                   for r in tuning):
                            row = run_cell(grid, model=model, method=method, batch=TUNING_BATCH, train_mode=train_mode,
                                           trained=trained, seed=TUNING_SEED, weight=w, local_steps=args.local_steps)
                            append_row(args.out / "tuning.jsonl", row)
                            tuning.append(row)
                    weights[method] = chosen_weight(tuning, model=model, method=method, train_mode=train_mode,
                                                    trained=trained)
                # seeds outermost: a budget cut leaves every batch size with some seeds
                for seed in grid.seeds:
                    for batch in grid.batches:
                        for method in METHODS:
                            if not applicable(method, train_mode) or over_budget():
                                continue
                            key = (model, method, batch, train_mode, trained, seed, args.local_steps)
                            if key in done:
                                continue
                            row = run_cell(grid, model=model, method=method, batch=batch, train_mode=train_mode,
                                           trained=trained, seed=seed, weight=weights.get(method, 0.0),
                                           local_steps=args.local_steps)
                            append_row(args.out / "runs.jsonl", row)
    print(tables(args.out))


if __name__ == "__main__":
    main()
