"""How much does the observed update pin the client's images? (Why priors decide the PSNR.)

Diagnostic, not an attack (it starts from the ground truth on purpose): for each batch size
and seed, start gradient matching (cosine distance, Adam, step decay, data box) from the
true batch plus Gaussian noise of standard deviation ``sigma`` and report the PSNR before and
after. If the update determined the images, matching would pull every start back towards the
truth; if PSNR barely moves, many images explain the update equally well and the result of
any attack is set by its prior. A second figure compares, for a trained prior, the gradient
loss of the truth's best projection onto the generator's range with the loss GI-z reaches.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/gias_identifiability.py --prior runs/prior
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gradleak.attacks import create_attack
from gradleak.attacks.loop import LoopSettings, optimise
from gradleak.attacks.objective import GradientMatcher
from gradleak.metrics import psnr
from gradleak.priors import attacker_data, load_prior
from gradleak.scenario import Scenario, simulate
from gradleak.sweep.aggregate import mean_std, pm


def from_noisy_truth(obs, truth, sigma: float, seed: int, iterations: int) -> tuple[float, float, float]:
    """(start PSNR, end PSNR, end gradient loss) of matching from truth + N(0, sigma^2)."""
    matcher = GradientMatcher(obs, distance="cosine")
    noise = torch.randn(truth.inputs.shape, generator=torch.Generator().manual_seed(seed))
    x = (truth.inputs + sigma * noise).clamp(0, 1).requires_grad_(True)
    start = psnr(x.detach(), truth.inputs, data_range=1.0).mean
    settings = LoopSettings(optimizer="adam", iterations=iterations, lr=0.01, step_decay=True, box=(0.0, 1.0))
    optimise(objective=lambda: matcher(x, truth.labels), variables=[x], boxed=[x], settings=settings)
    return start, psnr(x.detach(), truth.inputs, data_range=1.0).mean, matcher.loss_value(x.detach(), truth.labels)


def projection_loss(obs, truth, prior: Path, starts: int = 8, steps: int = 400) -> tuple[float, float]:
    """(PSNR, gradient loss) of the truth projected onto the prior's range by pixel-MSE latent search."""
    gen, _ = load_prior(prior)
    b = truth.inputs.shape[0]
    target = truth.inputs.repeat(starts, 1, 1, 1)
    z = gen.sample_latent(target.shape[0], generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    settings = LoopSettings(optimizer="adam", iterations=steps, lr=0.05, step_decay=True)
    optimise(objective=lambda: (gen(z) - target).pow(2).mean(), variables=[z], settings=settings)
    with torch.no_grad():
        err = (gen(z) - target).pow(2).flatten(1).mean(1).view(starts, b)
        x = gen(z.view(starts, b, -1)[err.argmin(0), torch.arange(b)])
    return psnr(x, truth.inputs, data_range=1.0).mean, GradientMatcher(obs, distance="cosine").loss_value(x, truth.labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="histology")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.15, 0.3])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--prior", type=Path, default=None, help="a trained prior: adds the projection vs GI-z figure")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gias_batch_table/identifiability"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    split = attacker_data(args.dataset)
    rows = []
    for batch in args.batch_sizes:
        for seed in args.seeds:
            obs, truth = simulate(Scenario(dataset=args.dataset, model="lenet", batch_size=batch, seed=seed),
                                  exclude=split.client_exclusion)
            for sigma in args.sigmas:
                start, end, loss = from_noisy_truth(obs, truth, sigma, seed, args.iterations)
                rows.append({"batch_size": batch, "seed": seed, "case": f"truth+noise {sigma}", "start_psnr": start,
                             "psnr": end, "gradient_loss": loss})
            if args.prior is not None:
                p, loss = projection_loss(obs, truth, args.prior)
                rows.append({"batch_size": batch, "seed": seed, "case": "projection of truth", "psnr": p,
                             "gradient_loss": loss})
                rec = create_attack("giz", prior=str(args.prior)).run(obs, generator=torch.Generator().manual_seed(seed))
                rows.append({"batch_size": batch, "seed": seed, "case": "GI-z (attack)",
                             "psnr": psnr(rec.inputs, truth.inputs, data_range=1.0).mean, "gradient_loss": rec.gradient_loss})
            print(rows[-1], flush=True)
    lines = ["| batch | case | start PSNR | PSNR after matching | gradient loss |", "|---:|---|---|---|---|"]
    for batch in args.batch_sizes:
        for case in dict.fromkeys(r["case"] for r in rows):
            group = [r for r in rows if r["batch_size"] == batch and r["case"] == case]
            start = pm(*mean_std([r.get("start_psnr") for r in group])) if "start_psnr" in group[0] else "-"
            lines.append(f"| {batch} | {case} | {start} | {pm(*mean_std([r['psnr'] for r in group]))} | "
                         f"{pm(*mean_std([r['gradient_loss'] for r in group]), 6)} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                           "rows": rows}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
