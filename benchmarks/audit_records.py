"""``gradleak audit`` on health records: the verdict and the per-batch figures on the clinical tables.

Runs the audit (standard budget unless ``--extra`` says otherwise) once per data set and
setting, keeps each run's ``results.json`` and ``report.html`` under
``benchmarks/results/audit_records/<name>/`` and writes ``table.md``: per batch size the
attacker's pick, its feature accuracy beside the blind guess, the advantage over the guess, the
attacker's most confident quarter of values (and the blind guess on the same values), the
defender's worst case, and the audit's verdict and wall time.

    python benchmarks/audit_records.py [--sets gbsg2 actg175 ihm-synthetic ehr-records] [--extra --budget quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

# name -> audit arguments (ehr-records: DESIGN.md section 6's profile on a real table, without secure aggregation:
# FedAvg, one epoch of two local steps of 32, the model pre-trained on disjoint data)
SETS = {
    "gbsg2": ["--dataset", "gbsg2"],
    "actg175": ["--dataset", "actg175"],
    "ihm-synthetic": ["--dataset", "ihm-synthetic"],
    "ihm-synthetic-gru": ["--dataset", "ihm-synthetic", "--model", "gru", "--batch-sizes", "1", "8"],
    "ehr-records": ["--dataset", "gbsg2", "--protocol", "fedavg", "--local-batch-size", "32", "--local-lr", "0.01",
                    "--trained-steps", "100", "--batch-sizes", "64"],
}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _advantage(acc: float | None, blind: float | None) -> float | None:
    return None if acc is None or blind is None or blind >= 1 else (acc - blind) / (1 - blind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further audit arguments")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/audit_records"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.sets:
        run_dir = args.out / name
        tmp = args.out / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gradleak.cli", "audit", "--quiet", *SETS[name], *args.extra,
                        "--out", str(tmp)], check=True)
        wall = time.perf_counter() - start
        for junk in ("report_inputs.safetensors",):
            (tmp / junk).unlink(missing_ok=True)
        (tmp / "wall_seconds.json").write_text(json.dumps({"wall_seconds": wall}) + "\n")
        shutil.rmtree(run_dir, ignore_errors=True)
        tmp.rename(run_dir)
    lines = ["# gradleak audit on health records", "",
             "Each row: one batch size of one audit (`results.json` and `report.html` beside this file). Feature "
             "accuracy: share of variables recovered (categories and flags exactly, continuous values within 0.1 "
             "std); blind guess: the attacker's column means and most frequent categories, scored the same way; "
             "advantage = (accuracy - blind) / (1 - blind). Confident quarter: the attacker's most confident "
             "quarter of values (tableak's ensemble agreement) and the blind guess on the same values. Mean over "
             "the audit's seeds.", "",
             "| audit | arguments | batch | attacker's pick | feature acc. | blind guess | advantage | confident "
             "quarter | blind there | worst case (attack) | labels | verdict | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in SETS:
        path = args.out / name / "results.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        wall = json.loads((args.out / name / "wall_seconds.json").read_text())["wall_seconds"]
        worst = {w["batch_size"]: w for w in r["attacks"].get("worst_case", [])}
        labels = {lr["batch_size"]: lr["accuracy"] for lr in r["labels"]}
        for c in r["attacks"]["attacker_choice"]:
            b = c["batch_size"]
            w = worst.get(b, {})
            lines.append(
                f"| {name} | `{' '.join(r['argv'][2:-2])}` | {b} | {', '.join(c['attacks'])} | "
                f"{_pct(c.get('feature_accuracy'))} | {_pct(c.get('baseline_feature_accuracy'))} | "
                f"{_pct(_advantage(c.get('feature_accuracy'), c.get('baseline_feature_accuracy')))} | "
                f"{_pct(c.get('confidence_q4_accuracy'))} | {_pct(c.get('confidence_q4_baseline'))} | "
                f"{_pct(w.get('feature_accuracy'))} ({w.get('attack', '-')}) | {_pct(labels.get(b))} | "
                f"{r['verdict']['title']} | {wall:.0f} |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
