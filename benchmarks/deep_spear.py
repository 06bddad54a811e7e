"""Deep SPEAR (issue #16 item 2): features leak exactly through a CNN's FC+ReLU head; what do
they add to an image inversion?

Part 1, features (``spear`` disaggregation only, seconds per cell): for CNN victims with an
FC+ReLU head (``hidden_fc=256``, untrained, first round, fedsgd) on histology and digits, batch
8 / 16 / 32 x seeds: the update's rank at the head, the share of the batch's feature vectors
recovered exactly (relative error <= 1e-4, Hungarian-paired with the truth's features), the share
the attacker certified, and certified-but-wrong rows (must be 0).

Part 2, images: plain ``ig`` against ``spear-ig`` (the same IG with the recovered features as
per-slot targets and spear's per-sample labels) with the SAME iterations, restarts and seed, on
the victim where the features are recovered: PSNR / SSIM (Hungarian-matched), label accuracy,
seconds. The feature weight is chosen before part 2 on a tuning seed (100, not an evaluation
seed) by the final gradient loss + feature residual, both attacker-computable (never PSNR).

    nice python benchmarks/deep_spear.py                 # everything (budget-limited, see --minutes)
    nice python benchmarks/deep_spear.py --part images --datasets digits --minutes 40   # what was committed
    nice python benchmarks/deep_spear.py --part features

Results: benchmarks/results/deep_spear/{features.jsonl,tuning.jsonl,images.jsonl,table.json,table.md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gradleak.attacks import create_attack
from gradleak.metrics.features import FEATURE_EXACT_RELATIVE
from gradleak.models.taps import layer_inputs
from gradleak.runner import evaluate
from gradleak.scenario import Scenario, simulate
from gradleak.sweep.aggregate import mean_std
from _runs import append_row, load_rows  # benchmarks/_runs.py (the script's own folder is on sys.path)

OUT = Path(__file__).parent / "results" / "deep_spear"
# victim name -> (model, options, BatchNorm in training mode at the client)
VICTIMS = {
    "lenet+fc256": ("lenet", {"hidden_fc": 256}, False),
    "convnet8+fc256 (BN eval)": ("convnet", {"width": 8, "hidden_fc": 256}, False),
    "convnet8+fc256 (BN train)": ("convnet", {"width": 8, "hidden_fc": 256}, True),
}
IMAGE_VICTIM = "convnet8+fc256 (BN train)"
DATASETS = ("histology", "digits")
BATCHES = (8, 16, 32)
SEEDS = (0, 1, 2)
WEIGHTS = (1.0, 10.0)
TUNING_SEED = 100


def _scenario(victim: str, dataset: str, batch: int, seed: int) -> Scenario:
    model, options, train_mode = VICTIMS[victim]
    return Scenario(dataset=dataset, model=model, batch_size=batch, seed=seed, model_options=options,
                    train_mode=train_mode)


def feature_cell(victim: str, dataset: str, batch: int, seed: int) -> dict:
    from gradleak.attacks.spear.disaggregate import Settings
    from gradleak.attacks.spear.recover import find_layer, recover_layer

    observation, truth = simulate(_scenario(victim, dataset, batch, seed))
    model = observation.build_model().double()
    target = find_layer(observation, model, "")
    start = time.perf_counter()
    rec = recover_layer(observation, model=model, target=target, settings=Settings(),
                        generator=torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - start
    true = layer_inputs(observation.build_model(), truth.inputs, target.name).double()
    found = rec.inputs
    exact_rows = []
    if len(found):
        err = torch.cdist(found, true) / true.norm(dim=1)
        exact_rows = (err.min(1).values <= FEATURE_EXACT_RELATIVE).tolist()
    from gradleak.metrics.features import feature_exact_fraction

    return {"victim": victim, "dataset": dataset, "batch_size": batch, "seed": seed, "layer": target.name,
            "features": int(true.shape[1]), "rank": rec.outcome.rank, "found": len(found),
            "feature_exact_fraction": feature_exact_fraction(found, true),
            "feature_certified_fraction": sum(rec.certified) / batch,
            "certified_wrong": sum(1 for c, e in zip(rec.certified, exact_rows) if c and not e),
            "seconds": seconds}


def image_cell(attack: str, dataset: str, batch: int, seed: int, *, iterations: int, weight: float) -> dict:
    observation, truth = simulate(_scenario(IMAGE_VICTIM, dataset, batch, seed))
    options = {"iterations": iterations, "restarts": 1}
    if attack == "spear-ig":
        options["feature_weight"] = weight
    rec = create_attack(attack, **options).run(observation, generator=torch.Generator().manual_seed(seed))
    metrics = evaluate(rec, truth, observation=observation)
    row = {"attack": attack, "dataset": dataset, "batch_size": batch, "seed": seed, "iterations": iterations,
           "feature_weight": weight if attack == "spear-ig" else None, "psnr": metrics["psnr"],
           "ssim": metrics["ssim"], "label_accuracy": metrics["label_accuracy"],
           "label_method": rec.label_method, "gradient_loss": rec.gradient_loss, "seconds": rec.seconds,
           "feature_exact_fraction": metrics.get("feature_exact_fraction"),
           "feature_certified_fraction": metrics.get("feature_certified_fraction")}
    residual = next((n for n in rec.notes if "final feature residual" in n), None)
    if residual is not None:
        row["feature_residual"] = float(residual.rsplit(" ", 1)[1])
    return row


def _ms(values: list[float], digits: int) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def tables(out: Path) -> str:
    feats, tuning, images = load_rows(out / "features.jsonl"), load_rows(out / "tuning.jsonl"), load_rows(out / "images.jsonl")
    lines = ["### Feature vectors at the FC head (spear disaggregation)", "",
             "| data | victim | batch | seeds | rank / batch | feature exact | feature certified | certified but wrong | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    summary: dict = {"features": [], "images": [], "tuning": tuning}
    for dataset in DATASETS:
        for victim in VICTIMS:
            for b in BATCHES:
                rows = [r for r in feats if r["victim"] == victim and r["dataset"] == dataset and r["batch_size"] == b]
                if not rows:
                    continue
                cell = {"dataset": dataset, "victim": victim, "batch_size": b, "seeds": len(rows),
                        "rank": [r["rank"] for r in rows],
                        "feature_exact": mean_std([r["feature_exact_fraction"] for r in rows]),
                        "feature_certified": mean_std([r["feature_certified_fraction"] for r in rows]),
                        "certified_wrong": sum(r["certified_wrong"] for r in rows)}
                summary["features"].append(cell)
                lines.append(f"| {dataset} | {victim} | {b} | {len(rows)} | {', '.join(str(r['rank']) for r in rows)} / {b} | "
                             f"{_ms([r['feature_exact_fraction'] for r in rows], 3)} | "
                             f"{_ms([r['feature_certified_fraction'] for r in rows], 3)} | {cell['certified_wrong']} | "
                             f"{_ms([r['seconds'] for r in rows], 1)} |")
    if tuning:
        lines += ["", "### Feature weight (tuning seed %d, chosen by gradient loss + feature residual)" % TUNING_SEED, "",
                  "| data | batch | weight | gradient loss | feature residual | criterion | PSNR (not used) |", "|---|---|---|---|---|---|---|"]
        for r in tuning:
            lines.append(f"| {r['dataset']} | {r['batch_size']} | {r['feature_weight']:g} | {r['gradient_loss']:.4f} | "
                         f"{r.get('feature_residual', 0):.4f} | {r['gradient_loss'] + r.get('feature_residual', 0):.4f} | {r['psnr']:.2f} |")
    if images:
        lines += ["", f"### Images: IG vs feature-matched IG ({IMAGE_VICTIM}, same iterations and restarts)", "",
                  "| data | batch | attack | seeds | iterations | PSNR (dB) | SSIM | label acc. | seconds |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for dataset in DATASETS:
            for b in BATCHES:
                for attack in ("ig", "spear-ig"):
                    rows = [r for r in images if r["dataset"] == dataset and r["batch_size"] == b and r["attack"] == attack]
                    if not rows:
                        continue
                    summary["images"].append({"dataset": dataset, "batch_size": b, "attack": attack, "seeds": len(rows),
                                              "psnr": mean_std([r["psnr"] for r in rows]),
                                              "ssim": mean_std([r["ssim"] for r in rows]),
                                              "label_accuracy": mean_std([r["label_accuracy"] for r in rows]),
                                              "seconds": mean_std([r["seconds"] for r in rows])})
                    lines.append(f"| {dataset} | {b} | {attack} | {len(rows)} | {rows[0]['iterations']} | "
                                 f"{_ms([r['psnr'] for r in rows], 2)} | {_ms([r['ssim'] for r in rows], 3)} | "
                                 f"{_ms([r['label_accuracy'] for r in rows], 2)} | {_ms([r['seconds'] for r in rows], 0)} |")
    (out / "table.json").write_text(json.dumps(summary, indent=1) + "\n")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--part", choices=("features", "tuning", "images", "table", "all"), default="all")
    parser.add_argument("--iterations", type=int, default=60, help="IG iterations, the same for both attacks")
    parser.add_argument("--weight", type=float, default=None, help="skip tuning: use this feature weight")
    parser.add_argument("--minutes", type=float, default=45.0, help="stop starting image cells after this long")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    start = time.time()
    if args.part in ("features", "all"):
        for dataset in args.datasets:
            for victim in VICTIMS:
                for b in args.batches:
                    for seed in SEEDS:
                        append_row(args.out / "features.jsonl", feature_cell(victim, dataset, b, seed))
    weight = args.weight
    if weight is None and args.part in ("tuning", "images", "all"):
        tuning = load_rows(args.out / "tuning.jsonl")
        if not tuning:
            for w in WEIGHTS:
                row = image_cell("spear-ig", "digits", 8, TUNING_SEED, iterations=args.iterations, weight=w)
                append_row(args.out / "tuning.jsonl", row)
                tuning.append(row)
        weight = min(tuning, key=lambda r: r["gradient_loss"] + r.get("feature_residual", 0.0))["feature_weight"]
        print(f"feature weight chosen: {weight}", flush=True)
    if args.part in ("images", "all"):
        done = {(r["attack"], r["dataset"], r["batch_size"], r["seed"]) for r in load_rows(args.out / "images.jsonl")}
        # seeds first across batch sizes, so a budget cut leaves every batch size with some seeds
        order = [(d, b, s) for s in SEEDS for d in args.datasets for b in args.batches]
        for dataset, b, seed in order:
            if (time.time() - start) / 60 > args.minutes:
                print("time budget reached; remaining image cells skipped", flush=True)
                break
            for attack in ("ig", "spear-ig"):
                if (attack, dataset, b, seed) not in done:
                    append_row(args.out / "images.jsonl",
                            image_cell(attack, dataset, b, seed, iterations=args.iterations, weight=weight))
    print(tables(args.out))


if __name__ == "__main__":
    main()
