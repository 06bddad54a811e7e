"""The latent perturbation against the attacker it is built to resist: a decoder the server trains.

Histology / LeNet, batch 1, FedAvg-trained model (30 rounds, 4 clients), 3 class-balanced victims
per seed: IG (cosine matching, adaptive: the noise at its mean) beside ``latent-decoder`` (the
head's input read exactly from its gradient, decoded by a decoder trained on the attacker's own
split with the model's own learned latent noise), for no defense and the seed defense at three
strengths. Mean +- std over seeds. Writes ``benchmarks/results/perturb_decoder.{jsonl,md}``.

    OMP_NUM_THREADS=1 python benchmarks/perturb_decoder.py [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from gradleak.defenses.evaluation import DefendConfig, Evaluator
from gradleak.defenses.federated import FederatedConfig
from _runs import load_rows  # benchmarks/_runs.py (the script's own folder is on sys.path)

SETTINGS = ("none", "perturb:0.3", "perturb:1", "perturb:3")
ATTACKS = ("ig", "latent-decoder")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = args.out / "perturb_decoder.jsonl"
    done = {(r["seed"], r["defense_spec"]): r for r in load_rows(cache)}
    for seed in args.seeds:
        evaluator = None
        for spec in SETTINGS:
            if (seed, spec) in done:
                continue
            if evaluator is None:
                evaluator = Evaluator(DefendConfig(
                    dataset="histology", model="lenet", attack=ATTACKS[0], extra_attacks=ATTACKS[1:], victims=3,
                    attack_options={"iterations": 200}, federated=FederatedConfig(rounds=30), reference_steps=400,
                    seed=seed, side_by_side=False))
            cpu = time.process_time()
            row = evaluator.run(spec).row
            row.update(seed=seed, defense_spec=spec, cpu_seconds=time.process_time() - cpu)
            with cache.open("a") as f:
                f.write(json.dumps(row) + "\n")
            done[(seed, spec)] = row
            print(seed, spec, {a: round(v["psnr"], 2) for a, v in row["attacks"].items()}, flush=True)
    lines = ["# Latent perturbation vs an attacker-trained decoder (histology / LeNet / batch 1)", "",
             f"Seeds {sorted({s for s, _ in done})}, 3 victims each, FedAvg-trained model (30 rounds). PSNR (dB), "
             "SSIM and attacker accuracy per attack, mean ± std over seeds.", "",
             "| setting | client acc. | IG PSNR | IG attacker acc. | latent-decoder PSNR | latent-decoder SSIM | "
             "latent-decoder attacker acc. |", "|---|---|---|---|---|---|---|"]

    def ms(values):
        values = [v for v in values if v is not None]
        return f"{statistics.mean(values):.3g} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2g}"

    for spec in SETTINGS:
        rows = [r for (s, p), r in sorted(done.items()) if p == spec]
        if not rows:
            continue
        lines.append(f"| {spec} | {ms([r['client_accuracy'] for r in rows])} | "
                     f"{ms([r['attacks']['ig']['psnr'] for r in rows])} | "
                     f"{ms([r['attacks']['ig']['attacker_accuracy'] for r in rows])} | "
                     f"{ms([r['attacks']['latent-decoder']['psnr'] for r in rows])} | "
                     f"{ms([r['attacks']['latent-decoder']['ssim'] for r in rows])} | "
                     f"{ms([r['attacks']['latent-decoder']['attacker_accuracy'] for r in rows])} |")
    (args.out / "perturb_decoder.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
