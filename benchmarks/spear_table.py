"""SPEAR table (issue #16): exact recovery against batch size, layer width and data set.

Per data set (histology images, ihm-synthetic records) x first-layer width (256, 1000) x batch
size (2..64) x seed: the share of the batch recovered exactly (``gradleak.metrics.exact``: PSNR >= 60 dB,
records: max abs error <= 1e-4), the share the attacker certified itself, certified-but-wrong
samples (must be 0), label accuracy, seconds of the attack, and how many samples peeling vs
SPEAR sampling found. Beside each cell: the architecture-only prediction of
``gradleak.analysis.disaggregation`` (independent-activation model) for that width.

The victim is ``mlp`` (ReLU, untrained, first round, fedsgd; hidden widths ``[W, 256]``). The
published SPEAR setting for comparison (Dimitrov et al., NeurIPS 2024): fully connected ReLU
networks (widths 200-2000) on MNIST / CIFAR-10 / TinyImageNet / ImageNet, batches up to ~25
recovered exactly on a GPU, with ~99 % of batches of 20 exact and sampling cost growing as 2^b.

    python benchmarks/spear_table.py            # 3 seeds, batches 2,4,8,16,32,64
    python benchmarks/spear_table.py --quick    # 1 seed, batches 4,16,32

Results: benchmarks/results/spear_table/{runs.jsonl,table.json,table.md,exact_vs_batch.png}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from gradleak.analysis.disaggregation import disaggregation_analysis
from gradleak.attacks import create_attack
from gradleak.metrics.exact import EXACT_MAX_ERROR, EXACT_PSNR_DB, row_max_error
from gradleak.runner import evaluate
from gradleak.scenario import Scenario, simulate
from gradleak.sweep.aggregate import mean_std

OUT = Path(__file__).parent / "results" / "spear_table"
DATASETS = ("histology", "ihm-synthetic")
WIDTHS = (256, 1000)


def run_cell(dataset: str, width: int, batch: int, seed: int) -> dict:
    observation, truth = simulate(Scenario(dataset=dataset, model="mlp", batch_size=batch, seed=seed,
                                           model_options={"hidden": [width, 256]}))
    start = time.process_time()
    rec = create_attack("spear").run(observation, generator=torch.Generator().manual_seed(seed))
    cpu = time.process_time() - start
    metrics = evaluate(rec, truth, observation=observation)
    exact = _exact_per_sample(metrics, rec, truth)
    assignment = metrics["assignment"]  # truth i <- reconstruction assignment[i]
    certified_wrong = sum(1 for i, j in enumerate(assignment) if rec.certified[j] and not exact[i])
    by = {"ratio": 0, "sampling": 0}
    for note in rec.notes:
        if "sample(s) by" in note:
            n = int(note.split(": ")[1].split(" ")[0])
            by["sampling" if "sampling" in note else "ratio"] += n
    return {"dataset": dataset, "width": width, "batch_size": batch, "seed": seed,
            "exact_fraction": metrics["exact_fraction"], "certified_fraction": metrics["certified_fraction"],
            "certified_wrong": certified_wrong, "label_accuracy": metrics["label_accuracy"],
            "label_method": rec.label_method, "seconds": rec.seconds, "cpu_seconds": cpu,
            "found_by_peeling": by["ratio"], "found_by_sampling": by["sampling"]}


def _exact_per_sample(metrics: dict, rec, truth) -> list[bool]:
    """The same per-sample test as ``metrics.exact`` (images: PSNR; records: max abs error)."""
    if "psnr_per_sample" in metrics:
        return [v >= EXACT_PSNR_DB for v in metrics["psnr_per_sample"]]
    return [v <= EXACT_MAX_ERROR for v in row_max_error(rec.inputs, truth.inputs, metrics["assignment"])]


def predictions(dataset: str, width: int) -> dict:
    from gradleak.data import load_dataset
    from gradleak.models import build_model

    shape = load_dataset(dataset).input_shape
    model = build_model("mlp", input_shape=shape, num_classes=2, hidden=[width, 256])
    return disaggregation_analysis(model, input_shape=shape).to_json()


def summarise(rows: list[dict]) -> list[dict]:
    table = []
    keys = sorted({(r["dataset"], r["width"], r["batch_size"]) for r in rows})
    for dataset, width, batch in keys:
        cell = [r for r in rows if (r["dataset"], r["width"], r["batch_size"]) == (dataset, width, batch)]
        out = {"dataset": dataset, "width": width, "batch_size": batch, "seeds": len(cell)}
        for k in ("exact_fraction", "certified_fraction", "label_accuracy", "seconds", "found_by_sampling"):
            out[k], out[f"{k}_std"] = mean_std([r[k] for r in cell])
        out["certified_wrong"] = sum(r["certified_wrong"] for r in cell)
        table.append(out)
    return table


def markdown(table: list[dict], preds: dict) -> str:
    lines = ["| data | width | batch | exact | certified | certified but wrong | labels | seconds | by sampling "
             "| predicted limit (rank / sampling / peeling) |", "|" + "---|" * 10]
    for r in table:
        p = preds[f"{r['dataset']}:{r['width']}"]
        lines.append(
            f"| {r['dataset']} | {r['width']} | {r['batch_size']} | {r['exact_fraction']:.3f} ± {r['exact_fraction_std']:.3f} "
            f"| {r['certified_fraction']:.3f} ± {r['certified_fraction_std']:.3f} | {r['certified_wrong']} "
            f"| {r['label_accuracy']:.3f} | {r['seconds']:.1f} ± {r['seconds_std']:.1f} | {r['found_by_sampling']:.1f} "
            f"| {'yes' if r['batch_size'] <= p['expected_limit'] else 'no'} (<= {p['expected_limit']}: "
            f"{p['rank_limit']} / {p['sampling_limit']} / {p['peeling_limit']}) |")
    return "\n".join(lines) + "\n"


def plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for dataset in DATASETS:
        for width in WIDTHS:
            cell = [r for r in table if r["dataset"] == dataset and r["width"] == width]
            if cell:
                ax.errorbar([r["batch_size"] for r in cell], [r["exact_fraction"] for r in cell],
                            yerr=[r["exact_fraction_std"] for r in cell], marker="o", capsize=3,
                            label=f"{dataset}, width {width}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("client batch size")
    ax.set_ylabel("share recovered exactly")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("spear on an untrained ReLU MLP (3 seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="only these batch sizes")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="runs.jsonl whose rows for the other batch sizes are kept (the attack is unchanged there)")
    args = parser.parse_args()
    batches = tuple(args.batches) if args.batches else (4, 16, 32) if args.quick else (2, 4, 8, 16, 32, 64)
    seeds = range(1) if args.quick else range(3)
    args.out.mkdir(parents=True, exist_ok=True)
    cells = [(d, w, b, s) for d in DATASETS for w in WIDTHS for b in batches for s in seeds]
    rows = []
    if args.reuse is not None:
        rows = [json.loads(line) for line in args.reuse.read_text().splitlines()
                if json.loads(line)["batch_size"] not in batches]
    with open(args.out / "runs.jsonl", "w") as journal:
        for row in rows:
            journal.write(json.dumps(row) + "\n")
        for d, w, b, s in tqdm(cells, desc="spear table", unit="run"):
            row = run_cell(d, w, b, s)
            rows.append(row)
            journal.write(json.dumps(row) + "\n")
            journal.flush()
    preds = {f"{d}:{w}": predictions(d, w) for d in DATASETS for w in WIDTHS}
    table = summarise(rows)
    (args.out / "table.json").write_text(json.dumps({"table": table, "predictions": preds}, indent=2) + "\n")
    (args.out / "table.md").write_text(markdown(table, preds))
    plot(table, args.out / "exact_vs_batch.png")
    print(markdown(table, preds))


if __name__ == "__main__":
    main()
