"""Does the update pin the client's batch? The gradient loss of near and far candidates, per victim.

An attack can only recover a batch that the update tells apart from its alternatives. For each
victim this measures the cosine gradient loss (the attacks' objective) of: the truth plus
Gaussian noise (sigma 0.01 and 0.05), the truth blurred by a 3x3 mean filter, *other* natural
patches with the same labels, and uniform noise. A victim suits a large-batch attack when
near candidates score far lower than far ones, and an attack's final loss is meaningful only
against these yardsticks: a run that ends above the "noise 0.05" loss has not reached the
truth's neighbourhood, whatever it shows. Also the cost of one gradient-matching step divided
by a plain forward+backward of the same batch (the ratio the README's speed notes use).

    python benchmarks/cinet_victims.py                  # batch 32, histology 32 px, ~2 CPU-minutes
    python benchmarks/cinet_victims.py --batch-size 16

Outputs ``benchmarks/results/cinet_victims/victims.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gradleak.attacks.objective import GradientMatcher
from gradleak.data import load_dataset
from gradleak.outdir import write_json
from gradleak.priors import attacker_data
from gradleak.scenario import Scenario, simulate

#: (label, model, options, pre-training steps, BatchNorm train mode)
VICTIMS = (
    ("convnet w8, untrained", "convnet", {"width": 8}, 0, False),
    ("convnet w8, 200 steps", "convnet", {"width": 8}, 200, False),
    ("convnet w16, 200 steps", "convnet", {"width": 16}, 200, False),
    ("sigmoid resnet18 w8, untrained", "resnet18", {"width": 8, "activation": "sigmoid"}, 0, False),
    ("sigmoid resnet18 w8, untrained, train-mode BN", "resnet18", {"width": 8, "activation": "sigmoid"}, 0, True),
    ("sigmoid resnet18 w8, 200 steps", "resnet18", {"width": 8, "activation": "sigmoid"}, 200, False),
    ("relu resnet18 w8, 200 steps", "resnet18", {"width": 8, "activation": "relu"}, 200, False),
    ("cnn6 (R-GAP), untrained", "cnn6", {}, 0, False),
    ("lenet (DLG), untrained", "lenet", {}, 0, False),
    ("mlp, untrained", "mlp", {}, 0, False),
)


def step_ratio(matcher: GradientMatcher, inputs: torch.Tensor, labels: torch.Tensor, rounds: int = 3) -> float:
    """min time of one matching step (forward, double backward) / min time of forward+backward."""
    x = torch.rand_like(inputs).requires_grad_(True)
    plain, match = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        F.cross_entropy(matcher.model(inputs), labels).backward()
        plain.append(time.perf_counter() - t)
        t = time.perf_counter()
        matcher(x, labels).backward()
        match.append(time.perf_counter() - t)
    return min(match) / min(plain)


def survey(*, batch_size: int, seed: int) -> list[dict]:
    data = load_dataset("histology", image_size=32)
    exclude = attacker_data("histology", image_size=32).client_exclusion
    rows = []
    for label, model, options, trained, train_mode in VICTIMS:
        scenario = Scenario(dataset="histology", model=model, batch_size=batch_size, seed=seed, image_size=32,
                            trained_steps=trained, share_labels=True, train_mode=train_mode, model_options=options)
        observation, truth = simulate(scenario, exclude=exclude)
        matcher = GradientMatcher(observation, distance="cosine")
        x, y = truth.inputs, truth.labels
        g = torch.Generator().manual_seed(seed + 1)
        # other natural patches of the same class, never the client's own
        pool = {c: torch.nonzero((data.labels == c) & ~torch.isin(torch.arange(len(data)), truth.indices)).flatten()
                for c in set(y.tolist())}
        other = torch.stack([data.inputs[pool[c][torch.randint(len(pool[c]), (1,), generator=g)]].squeeze(0)
                             for c in y.tolist()])
        candidates = {
            "noise 0.01": (x + 0.01 * torch.randn(x.shape, generator=g)).clamp(0, 1),
            "noise 0.05": (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1),
            "blur 3x3": F.avg_pool2d(x, 3, 1, 1, count_include_pad=False),
            "other patches": other,
            "uniform noise": torch.rand(x.shape, generator=g),
        }
        losses = {k: matcher.loss_value(v, y) for k, v in candidates.items()}
        rows.append({"victim": label, "parameters": sum(v.numel() for v in observation.update.values()),
                     "step_ratio": step_ratio(matcher, x, y), "losses": losses})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict], *, batch_size: int, seed: int) -> str:
    names = list(rows[0]["losses"])
    lines = [f"# Does the update pin the batch? (histology 32 px, batch {batch_size}, seed {seed}, cosine loss)", "",
             "| victim | P(F) | step / fwd+bwd | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for r in rows:
        cells = " | ".join(f"{r['losses'][n]:.2g}" for n in names)
        lines.append(f"| {r['victim']} | {r['parameters']} | {r['step_ratio']:.1f} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cinet_victims"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = survey(batch_size=args.batch_size, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "victims.json", {"batch_size": args.batch_size, "seed": args.seed, "rows": rows})
    (args.out / "victims.md").write_text(markdown(rows, batch_size=args.batch_size, seed=args.seed))
    print((args.out / "victims.md").read_text())


if __name__ == "__main__":
    main()
