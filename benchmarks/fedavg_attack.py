"""FedAvg with several local steps (issue #21 item 3): the FedAvg attack vs replaying IG.

The client holds 8 samples and runs FedAvg (lr 0.1) in one of the issue's two schedules,
2 epochs x 2 steps x local batch 4, or 5 epochs x 1 step x batch 8, with and without shuffling
its batch every epoch (a private seed the attacker never sees). Attackers, same iterations and
seed, labels estimated from the update (not shared):

* ``replay``: Inverting Gradients replaying the local steps in the batch's fixed order (what the
  toolkit did before; under shuffling that order is wrong);
* ``fedavg``: Dimitrov et al.'s attack (:mod:`gradleak.attacks.fedavg`): one reconstruction per
  epoch, simulated local training, epoch-order-invariant prior, consensus as output;
* ``fedavg-noprior``: the same with the prior off (``epoch_weight`` 0), the ablation.

Metric: the fraction of samples recovered with SSIM >= 0.5 (reconstructions matched to the truth
by Hungarian on MSE, for evaluation only), mean PSNR and SSIM. Untrained victims.

    nice -n 10 python benchmarks/fedavg_attack.py --victims digits-lenet            # ~15 min on one core
    nice -n 10 python benchmarks/fedavg_attack.py --victims histology28-lenet

Results: benchmarks/results/fedavg_attack/{runs.jsonl,table.md}; rerunning skips cached cells.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from gradleak.attacks import create_attack
from gradleak.fl.protocol import Protocol
from gradleak.runner import evaluate
from gradleak.scenario import Scenario, simulate
from gradleak.sweep.aggregate import mean_std
from _runs import append_row, load_rows  # benchmarks/_runs.py (the script's own folder is on sys.path)

OUT = Path(__file__).parent / "results" / "fedavg_attack"
VICTIMS = {  # label -> scenario fields
    "digits-lenet": {"dataset": "digits", "model": "lenet"},
    "histology28-lenet": {"dataset": "histology", "model": "lenet", "image_size": 28, "grayscale": True},
}
SCHEDULES = {"2x2x4": (2, 4), "5x1x8": (5, 8)}  # label -> (local epochs, local batch); 8 samples in all
SAMPLES = 8
METHODS = {"replay": ("ig", {}), "fedavg": ("fedavg", {}), "fedavg-noprior": ("fedavg", {"epoch_weight": 0.0})}
THRESHOLD = 0.5  # SSIM at which a sample counts as recovered


def run_cell(*, victim: str, schedule: str, shuffle: bool, method: str, seed: int, iterations: int) -> dict:
    epochs, batch = SCHEDULES[schedule]
    scenario = Scenario(**VICTIMS[victim], batch_size=SAMPLES, seed=seed,
                        protocol=Protocol(name="fedavg", lr=0.1, local_epochs=epochs, local_batch_size=batch,
                                          shuffle=shuffle))
    observation, truth = simulate(scenario)
    name, options = METHODS[method]
    rec = create_attack(name, iterations=iterations, **options).run(observation,
                                                                   generator=torch.Generator().manual_seed(seed))
    m = evaluate(rec, truth, observation=observation)
    ssims = m["ssim_per_sample"]
    return {"victim": victim, "schedule": schedule, "shuffle": shuffle, "method": method, "attack": name,
            "options": options, "seed": seed, "iterations": iterations, "iterations_used": rec.iterations_used,
            "recovered": sum(s >= THRESHOLD for s in ssims) / len(ssims), "psnr": m["psnr"], "ssim": m["ssim"],
            "ssim_per_sample": ssims, "label_accuracy": m["label_accuracy"], "label_method": rec.label_method,
            "gradient_loss": rec.gradient_loss, "seconds": rec.seconds}


def _ms(values: list, digits: int) -> str:
    m, s = mean_std(values)
    return "-" if m is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def tables(out: Path) -> str:
    runs = load_rows(out / "runs.jsonl")
    lines = ["| victim | schedule (epochs x steps x batch) | client shuffles | attack | seeds "
             "| recovered (SSIM >= 0.5) | PSNR (dB) | SSIM | label accuracy | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for victim in VICTIMS:
        for schedule in SCHEDULES:
            epochs, batch = SCHEDULES[schedule]
            shown = f"{epochs} x {SAMPLES // batch} x {batch}"
            for shuffle in (False, True):
                for method in METHODS:
                    rows = [r for r in runs if (r["victim"], r["schedule"], r["shuffle"], r["method"]) ==
                            (victim, schedule, shuffle, method)]
                    if not rows:
                        continue
                    lines.append(f"| {victim} | {shown} | {'yes' if shuffle else 'no'} | {method} | {len(rows)} | "
                                 f"{_ms([r['recovered'] for r in rows], 2)} | {_ms([r['psnr'] for r in rows], 2)} | "
                                 f"{_ms([r['ssim'] for r in rows], 3)} | {_ms([r['label_accuracy'] for r in rows], 2)} "
                                 f"| {_ms([r['seconds'] for r in rows], 0)} |")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--victims", nargs="+", choices=tuple(VICTIMS), default=list(VICTIMS))
    parser.add_argument("--methods", nargs="+", choices=tuple(METHODS), default=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=800)
    parser.add_argument("--minutes", type=float, default=None, help="stop starting cells after this long")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    done = {(r["victim"], r["schedule"], r["shuffle"], r["method"], r["seed"], r["iterations"])
            for r in load_rows(args.out / "runs.jsonl")}
    start = time.time()
    for seed in args.seeds:  # seeds outermost: a budget cut leaves every cell with some seeds
        for victim in args.victims:
            for schedule in SCHEDULES:
                for shuffle in (True, False):
                    for method in args.methods:
                        if args.minutes is not None and (time.time() - start) / 60 > args.minutes:
                            continue
                        if (victim, schedule, shuffle, method, seed, args.iterations) in done:
                            continue
                        append_row(args.out / "runs.jsonl", run_cell(victim=victim, schedule=schedule, shuffle=shuffle,
                                                                     method=method, seed=seed,
                                                                     iterations=args.iterations))
    print(tables(args.out))


if __name__ == "__main__":
    main()
