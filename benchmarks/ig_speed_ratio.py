"""Speed of an Inverting Gradients iteration relative to a plain forward+backward pass.

Both are measured in one process on the same model, batch and thread count, so the ratio is
robust to the machine being shared and noisy. An attack iteration needs the update for the
candidate (forward + backward with a graph) and the gradient of the distance through it
(double back-propagation), so about 3x a plain forward+backward is the floor; the target is
<= 4.

The iteration time is the difference between a long and a short attack run divided by the
difference in iterations, which cancels fixed set-up costs (model rebuild, label recovery).

    python benchmarks/ig_speed_ratio.py [--models lenet convnet] [--batch-size 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from gradleak.attacks import create_attack
from gradleak.scenario import Scenario, simulate


def forward_backward_seconds(observation, inputs, labels, *, budget: float) -> float:
    """Median time of a plain training forward+backward, repeated for ``budget`` seconds."""
    model = observation.build_model()
    times: list[float] = []
    for i in range(1_000_000):
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), labels).backward()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - start)
        if sum(times) > budget and len(times) >= 5:
            break
    return statistics.median(times)


def attack_iteration_seconds(observation, *, short: int, long: int) -> float:
    def run(iterations: int) -> float:
        attack = create_attack("ig", iterations=iterations, patience=0)
        return attack.run(observation, generator=torch.Generator().manual_seed(0)).seconds

    run(2)  # warm-up
    return (run(long) - run(short)) / (long - short)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet", "convnet"])
    parser.add_argument("--dataset", default="histology")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds (median ratio)")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of forward+backward timing per round")
    parser.add_argument("--short", type=int, default=10)
    parser.add_argument("--long", type=int, default=60)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dataset {args.dataset}, batch {args.batch_size}")
    print(f"{'model':10s} {'fwd+bwd s':>10s} {'ig iter s':>10s} {'ratio':>7s}  (median of {args.rounds} rounds; min-max)")
    for name in args.models:
        observation, truth = simulate(Scenario(dataset=args.dataset, model=name, batch_size=args.batch_size))
        rows = []
        for _ in range(args.rounds):  # interleave, so drifting machine load hits both alike
            fb = forward_backward_seconds(observation, truth.inputs, truth.labels, budget=args.budget)
            it = attack_iteration_seconds(observation, short=args.short, long=args.long)
            rows.append((it / fb, fb, it))
        ratio, fb, it = sorted(rows)[len(rows) // 2]
        low, high = min(r[0] for r in rows), max(r[0] for r in rows)
        print(f"{name:10s} {fb:10.5f} {it:10.5f} {ratio:7.2f}  ({low:.2f}-{high:.2f})")


if __name__ == "__main__":
    main()
