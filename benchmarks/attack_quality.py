"""Attack quality over several seeds: mean +- std of PSNR, SSIM, label accuracy and time.

Each seed draws a different client batch and model initialisation; attacks run with their
defaults unless ``--iterations`` is given. Restarts are chosen by gradient loss inside the
attack; the ground truth is used here only to score.

    python benchmarks/attack_quality.py --dataset histology --model lenet --attacks idlg dlg --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics

import torch

from gradleak.attacks import create_attack
from gradleak.metrics import evaluate_images
from gradleak.scenario import Scenario, simulate


def _mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):8.3f} +- {spread:6.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="histology")
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--attacks", nargs="+", default=["idlg"])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=None)
    args = parser.parse_args()
    print(f"{args.dataset} / {args.model} / batch {args.batch_size} / seeds {args.seeds}")
    print(f"{'attack':8s} {'psnr':>18s} {'ssim':>18s} {'label acc':>18s} {'seconds':>18s}")
    for attack in args.attacks:
        rows: dict[str, list[float]] = {"psnr": [], "ssim": [], "label_accuracy": [], "seconds": []}
        for seed in args.seeds:
            observation, truth = simulate(
                Scenario(dataset=args.dataset, model=args.model, batch_size=args.batch_size, seed=seed)
            )
            options = {} if args.iterations is None else {"iterations": args.iterations}
            rec = create_attack(attack, **options).run(observation, generator=torch.Generator().manual_seed(seed))
            m = evaluate_images(reconstruction=rec.inputs.clamp(0, 1), truth=truth.inputs,
                                recon_labels=rec.labels, true_labels=truth.labels)
            for key in ("psnr", "ssim", "label_accuracy"):
                rows[key].append(m[key])
            rows["seconds"].append(rec.seconds)
        print(f"{attack:8s} " + " ".join(_mean_std(rows[k]) for k in ("psnr", "ssim", "label_accuracy", "seconds")))
        print(f"{'':8s} per-seed psnr: " + ", ".join(f"{v:.1f}" for v in rows["psnr"]))


if __name__ == "__main__":
    main()
