"""Robbing the Fed on histology: what a crafted imprint model recovers, and whether inspect catches it.

Part 1 (table): exact fraction (PSNR >= 60 dB after Hungarian matching) against clients k
(secure aggregation of k clients; k = 1 is one client alone) x batch B per client x bins, for
fedsgd and fedavg with 1 and 5 local steps (lr 0.01, the ward-images profile's), 3 seeds, beside
the analytic (1 - 1/bins)^(N-1) for N = k * B samples, and the attacker's own certified fraction.
Variants: the mean-brightness statistic, a row scale (gain) chosen for local steps, a trained
victim.

Part 2 (inspect): false alarms on every registered model (untrained at 3 seeds, and after 50
Adam steps), detections on every crafted model of part 1, and on crafted models whose rows are
perturbed with relative noise to hide (with what the attack still recovers from them).

    python benchmarks/imprint_table.py            # full (about 10 minutes on 2 cores)
    python benchmarks/imprint_table.py --quick    # 1 seed, fewer cells

Results: benchmarks/results/imprint_table/{table.json,table.md,exact_vs_samples.png}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from gradleak.fl.protocol import Protocol
from gradleak.fl.training import pretrain
from gradleak.malicious import ImprintCraft, inspect_state
from gradleak.malicious.experiment import MaliciousRound, expected_alone, run_round
from gradleak.models import MODELS, ModelSpec, complete_spec, create_model
from gradleak.priors import attacker_data
from gradleak.data import load_dataset

OUT = Path(__file__).parent / "results" / "imprint_table"
PROTOCOLS = {"fedsgd": Protocol(), "fedavg-1": Protocol(name="fedavg", lr=0.01),
             "fedavg-5": Protocol(name="fedavg", lr=0.01, local_epochs=5)}
RECORD_MODELS = {"gru", "lstm", "logreg"}  # models of records: inspected on ihm-synthetic's 48x76 shape


def _mean(values):
    return statistics.fmean(values) if values else None


def table(args, split) -> list[dict]:
    rows = []
    cells = [(k, b, bins, p) for k in args.clients for b in args.batch for bins in args.bins for p in PROTOCOLS]
    variants = [("mean statistic", ImprintCraft(statistic="mean"), 0), ("gain 100", ImprintCraft(gain=100.0), 0),
                ("trained victim (200 steps)", ImprintCraft(), 200)]
    plan = [(k, b, bins, p, "default", ImprintCraft(bins=bins), 0) for k, b, bins, p in cells]
    plan += [(8, 8, 1024, p, name, replace(c, bins=1024), t) for name, c, t in variants for p in PROTOCOLS]
    for i, (k, b, bins, p, variant, craft, trained) in enumerate(plan):
        runs = [run_round(MaliciousRound(clients=k, batch_size=b, protocol=PROTOCOLS[p], craft=craft, seed=s,
                                         trained_steps=trained), public=split.data.inputs,
                          exclude=split.client_exclusion) for s in range(args.seeds)]
        row = {"variant": variant, "clients": k, "batch": b, "samples": k * b, "bins": bins, "protocol": p,
               "exact": [r["exact_fraction"] for r in runs], "certified": [r["certified_fraction"] for r in runs],
               "expected": expected_alone(samples=k * b, bins=bins),
               "inspect_alarm": [r["inspect_alarm"] for r in runs],
               "attack_seconds": _mean([r["attack_seconds"] for r in runs]), "notes": runs[0]["notes"]}
        row["exact_mean"], row["certified_mean"] = _mean(row["exact"]), _mean(row["certified"])
        rows.append(row)
        print(f"[{i + 1}/{len(plan)}] {variant} k={k} B={b} bins={bins} {p}: exact {row['exact_mean']:.3f} "
              f"certified {row['certified_mean']:.3f} expected {row['expected']:.3f}", file=sys.stderr, flush=True)
    return rows


def false_alarms(args) -> list[dict]:
    images = load_dataset("histology")
    records = load_dataset("ihm-synthetic")
    out = []
    for name in MODELS.names():
        if name == "imprint":
            continue
        data = records if name in RECORD_MODELS else images
        spec = complete_spec(ModelSpec(name, data.input_shape, data.num_classes))
        for seed in range(args.seeds):
            for steps in (0, 50):
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    model = create_model(spec)
                if steps:
                    pretrain(model, data=data, steps=steps, generator=torch.Generator().manual_seed(seed))
                report = inspect_state(model.state_dict(), spec=spec)
                out.append({"model": name, "seed": seed, "trained_steps": steps, "alarm": report.alarm,
                            "max_parallel_share": max([f.parallel / f.rows for f in report.layers], default=0.0),
                            "max_rank_one_share": max([f.rank_one_share for f in report.layers], default=0.0)})
                print(f"inspect {name} seed {seed} trained {steps}: {report.verdict}", file=sys.stderr, flush=True)
    return out


def hidden(args, split) -> list[dict]:
    rows = []
    for noise in args.noise:
        runs = [run_round(MaliciousRound(clients=8, batch_size=8, noise=noise, seed=s), public=split.data.inputs,
                          exclude=split.client_exclusion) for s in range(args.seeds)]
        rows.append({"noise": noise, "exact": [r["exact_fraction"] for r in runs],
                     "certified": [r["certified_fraction"] for r in runs],
                     "inspect_alarm": [r["inspect_alarm"] for r in runs],
                     "exact_mean": _mean([r["exact_fraction"] for r in runs])})
        print(f"noise {noise}: exact {rows[-1]['exact_mean']:.3f} alarms {rows[-1]['inspect_alarm']}",
              file=sys.stderr, flush=True)
    return rows


def markdown(result) -> str:
    lines = ["# Imprint (Robbing the Fed) on histology: exact recovery through secure aggregation", "",
             f"LeNet victim, histology 3x28x28, bins from the attacker's split only; {result['seeds']} seed(s); "
             "exact = PSNR >= 60 dB after Hungarian matching; certified = the attacker's own single-sample check; "
             "expected = (1 - 1/bins)^(N-1). fedavg: lr 0.01, whole-batch local steps.", "",
             "| variant | clients k | batch B | N = kB | bins | protocol | exact (mean) | per seed | certified | expected | inspect refuses |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["table"]:
        lines.append(f"| {r['variant']} | {r['clients']} | {r['batch']} | {r['samples']} | {r['bins']} | {r['protocol']} | "
                     f"{r['exact_mean']:.3f} | {', '.join(f'{v:.2f}' for v in r['exact'])} | {r['certified_mean']:.3f} | "
                     f"{r['expected']:.3f} | {sum(r['inspect_alarm'])}/{len(r['inspect_alarm'])} |")
    fa = result["false_alarms"]
    crafted = [a for r in result["table"] for a in r["inspect_alarm"]]
    lines += ["", "## Client-side check (`gradleak inspect`)", "",
              f"- False alarms: {sum(r['alarm'] for r in fa)} of {len(fa)} benign models "
              f"({len({r['model'] for r in fa})} registered models x {result['seeds']} seeds x untrained / 50 Adam steps); "
              f"largest share of parallel rows in any benign layer: {max(r['max_parallel_share'] for r in fa):.3f}, "
              f"largest rank-one energy share: {max(r['max_rank_one_share'] for r in fa):.3f}.",
              f"- Detections: {sum(crafted)} of {len(crafted)} crafted models of the table.", "",
              "| row noise (relative) | exact (mean) | certified | inspect refuses |", "|---|---|---|---|"]
    for r in result["hidden"]:
        lines.append(f"| {r['noise']} | {r['exact_mean']:.3f} | {_mean(r['certified']):.3f} | "
                     f"{sum(r['inspect_alarm'])}/{len(r['inspect_alarm'])} |")
    lines += ["", f"Total {result['seconds']:.0f} s on {torch.get_num_threads()} thread(s)."]
    return "\n".join(lines) + "\n"


def plot(result) -> None:
    from gradleak.report.charts import save_series_plot

    series = {}
    for bins in sorted({r["bins"] for r in result["table"]}):
        for p in PROTOCOLS:
            rows = sorted((r for r in result["table"] if r["variant"] == "default" and r["bins"] == bins
                           and r["protocol"] == p and r["batch"] == 8), key=lambda r: r["samples"])
            if rows:
                series[f"{p}, {bins} bins"] = ([r["samples"] for r in rows], [r["exact_mean"] for r in rows],
                                               [statistics.pstdev(r["exact"]) for r in rows])
        xs = sorted({r["samples"] for r in result["table"] if r["batch"] == 8})
        series[f"expected, {bins} bins"] = (xs, [expected_alone(samples=n, bins=bins) for n in xs], None)
    save_series_plot(series, OUT / "exact_vs_samples.png", title="Imprint: exact recovery through secure aggregation (B = 8)",
                     xlabel="samples summed N = k x 8", ylabel="share recovered exactly", size=(720, 460))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="+", choices=("table", "hidden", "false_alarms"), default=None,
                    help="re-measure these parts only, keeping the others from the existing table.json")
    args = ap.parse_args()
    args.seeds = 1 if args.quick else 3
    args.clients = (1, 8) if args.quick else (1, 4, 8, 32)
    args.batch = (8,)
    args.bins = (1024,) if args.quick else (256, 1024)
    args.noise = (0.1, 0.5) if args.quick else (0.1, 0.3, 0.5, 1.0, 2.0)
    torch.set_num_threads(1)
    start = time.perf_counter()
    split = attacker_data("histology")
    result = {"seeds": args.seeds, "dataset": "histology", "model": "lenet", "client_pool": split.rule}
    if args.only:
        result = json.loads((OUT / "table.json").read_text())
    parts = {"table": lambda: table(args, split), "hidden": lambda: hidden(args, split),
             "false_alarms": lambda: false_alarms(args)}
    for name, measure in parts.items():
        if args.only is None or name in args.only:
            result[name] = measure()
    result["seconds"] = time.perf_counter() - start + (result.get("seconds", 0.0) if args.only else 0.0)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "table.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "table.md").write_text(markdown(result))
    plot(result)
    print(markdown(result))


if __name__ == "__main__":
    main()
