"""R-GAP's Table 1 on data that runs here: R-GAP, IG and H-GAP on CNN6 and CNN6-d.

Columns: CNN6 and CNN6-d (untrained, as in the paper) on ``histology`` (3x32x32 RGB, the
CIFAR-10 analogue) and ``faces`` (1x25x25 grayscale, the MNIST analogue). Rows: R-GAP
(float64), the optimisation attack (IG by default, the paper used DLG), and H-GAP, which picks
per image the one of the two closer to its own 3x3 average-pooled smoothing (no ground truth;
computed from the two runs, exactly what ``--attack hgap`` does). Cells: MSE mean +- std over
the images (reconstructions clamped to [0, 1], as the metrics do) and seconds per image; each
network's rank-analysis index is printed beside it.

    python benchmarks/rgap_table.py                 # 20 images per cell, IG 200 iterations
    python benchmarks/rgap_table.py --quick         # 3 images per cell, IG 50 iterations

Results: benchmarks/results/rgap_table.{json,md} and rgap_table_<dataset>_<model>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gradleak.analysis.rank import rank_analysis
from gradleak.attacks import create_attack
from gradleak.attacks.rgap_hgap import smoothness
from gradleak.report.plots import save_image_grid
from gradleak.scenario import Scenario, simulate

RESULTS = Path(__file__).parent / "results"
CELLS = (("histology", 32, "cnn6"), ("histology", 32, "cnn6d"), ("faces", None, "cnn6"), ("faces", None, "cnn6d"))
PAPER = {  # Table 1 of the paper (MSE mean +- std): CIFAR-10 and MNIST columns
    ("histology", "cnn6"): {"rgap": "0.010 +- 0.017", "opt": "0.050 +- 1.4", "hgap": "6.9e-3 +- 7.9e-3"},
    ("histology", "cnn6d"): {"rgap": "1.39 +- 0.73", "opt": "0.053 +- 0.013", "hgap": "0.053 +- 0.013"},
    ("faces", "cnn6"): {"rgap": "1.9e-4 +- 7.0e-4", "opt": "4.2e-4 +- 4.8e-4", "hgap": "1.4e-4 +- 1.9e-4"},
    ("faces", "cnn6d"): {"rgap": "9.0e-3 +- 9.3e-3", "opt": "1.2e-3 +- 1.5e-3", "hgap": "1.2e-3 +- 1.5e-3"},
}


def mse(x: torch.Tensor, truth: torch.Tensor) -> float:
    return float(((x.clamp(0, 1) - truth) ** 2).mean())


def run_cell(dataset: str, size: int | None, model: str, *, images: int, optimiser: str, iterations: int, bar) -> dict:
    rows, grid = [], []
    rank = None
    for seed in range(images):
        obs, truth = simulate(Scenario(dataset=dataset, model=model, image_size=size, seed=seed))
        if rank is None:
            net = obs.build_model()
            rank = rank_analysis(net, input_shape=obs.input_shape, numerical=False)
        closed = create_attack("rgap").run(obs)
        opt = create_attack(optimiser, iterations=iterations).run(obs, generator=torch.Generator().manual_seed(seed))
        a, b = closed.inputs.clamp(0, 1), opt.inputs.clamp(0, 1)
        pick = bool(smoothness(b)[0] < smoothness(a)[0])
        h = b if pick else a
        rows.append({"seed": seed, "rgap": mse(a, truth.inputs), "opt": mse(b, truth.inputs), "hgap": mse(h, truth.inputs),
                     "hgap_choice": optimiser if pick else "rgap", "rgap_s": closed.seconds, "opt_s": opt.seconds,
                     "rgap_ambiguous": any(n.startswith("ambiguous") for n in closed.notes)})
        if len(grid) < 4:
            grid.append((truth.inputs, a, b, h))
        bar.update(1)
    name = f"rgap_table_{dataset}_{model}.png"
    rows_t = [torch.cat([g[i] for g in grid]) for i in range(4)]
    save_image_grid(rows_t, RESULTS / name, row_labels=["truth", "R-GAP", optimiser, "H-GAP"])
    return {"dataset": dataset, "model": model, "input_shape": list(obs.input_shape), "images": rows,
            "ra_index": rank.index, "closed_form_index": rank.closed_form_index, "verdict": rank.verdict, "picture": name}


def stat(values) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.3g} +- {a.std():.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20, help="images per cell (default 20)")
    parser.add_argument("--iterations", type=int, default=200, help="optimisation-attack iterations (default 200)")
    parser.add_argument("--optimiser", default="ig", help="optimisation attack beside R-GAP (default ig)")
    parser.add_argument("--quick", action="store_true", help="3 images per cell, 50 iterations")
    args = parser.parse_args()
    if args.quick:
        args.images, args.iterations = 3, 50
    RESULTS.mkdir(exist_ok=True)
    load = os.getloadavg()
    cells = []
    with tqdm(total=len(CELLS) * args.images, desc="rgap table", unit="image", file=sys.stderr) as bar:
        for dataset, size, model in CELLS:
            cells.append(run_cell(dataset, size, model, images=args.images, optimiser=args.optimiser,
                                  iterations=args.iterations, bar=bar))
    record = {"images": args.images, "iterations": args.iterations, "optimiser": args.optimiser,
              "load_before": load, "load_after": os.getloadavg(), "cells": cells}
    (RESULTS / "rgap_table.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"# R-GAP Table 1 here ({args.images} images per cell, {args.optimiser} {args.iterations} iterations)", "",
             f"Load average {load[0]:.1f} (shared 2-core machine). MSE of reconstructions clamped to [0, 1], mean +- std; "
             "seconds per image; paper values (CIFAR-10 for histology, MNIST for faces) in brackets.", "",
             "| | " + " | ".join(f"{c['model']} {c['dataset']} {'x'.join(map(str, c['input_shape']))}" for c in cells) + " |",
             "|---|" + "---|" * len(cells)]
    for key, label in (("rgap", "R-GAP"), ("opt", args.optimiser), ("hgap", "H-GAP")):
        cols = []
        for c in cells:
            vals = [r[key] for r in c["images"]]
            secs = [r["rgap_s"] * (key != "opt") + r["opt_s"] * (key != "rgap") for r in c["images"]]
            cols.append(f"{stat(vals)} ({np.mean(secs):.2g} s) [{PAPER[(c['dataset'], c['model'])][key]}]")
        lines.append(f"| {label} | " + " | ".join(cols) + " |")
    lines.append("| RA-i (closed form) | " + " | ".join(f"{c['ra_index']:+d} ({c['closed_form_index']:+d})" for c in cells) + " |")
    lines.append("| H-GAP picked R-GAP | " + " | ".join(
        f"{sum(r['hgap_choice'] == 'rgap' for r in c['images'])}/{len(c['images'])}" for c in cells) + " |")
    lines.append("| R-GAP ambiguous (twin) | " + " | ".join(
        f"{sum(r['rgap_ambiguous'] for r in c['images'])}/{len(c['images'])}" for c in cells) + " |")
    (RESULTS / "rgap_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
