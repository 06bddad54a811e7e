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


def forward_backward_seconds(observation, inputs, labels, *, repeats: int) -> float:
    model = observation.build_model()
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), labels).backward()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def attack_iteration_seconds(observation, *, short: int, long: int) -> float:
    def run(iterations: int) -> float:
        attack = create_attack("ig", iterations=iterations)
        return attack.run(observation, generator=torch.Generator().manual_seed(0)).seconds

    run(2)  # warm-up
    return (run(long) - run(short)) / (long - short)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet", "convnet"])
    parser.add_argument("--dataset", default="histology")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20, help="forward+backward repetitions (median)")
    parser.add_argument("--short", type=int, default=10)
    parser.add_argument("--long", type=int, default=60)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dataset {args.dataset}, batch {args.batch_size}")
    print(f"{'model':10s} {'fwd+bwd s':>10s} {'ig iter s':>10s} {'ratio':>7s}")
    for name in args.models:
        observation, truth = simulate(Scenario(dataset=args.dataset, model=name, batch_size=args.batch_size))
        fb = forward_backward_seconds(observation, truth.inputs, truth.labels, repeats=args.repeats)
        it = attack_iteration_seconds(observation, short=args.short, long=args.long)
        print(f"{name:10s} {fb:10.5f} {it:10.5f} {it / fb:7.2f}")


if __name__ == "__main__":
    main()
