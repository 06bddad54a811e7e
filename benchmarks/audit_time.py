"""Wall time of the default ``gradleak audit``: the battery in one process vs one per core.

Runs the README's main job (``gradleak audit``, standard budget) twice, ``--workers 1`` and
``--workers N`` (default: every available core), and checks that both give the same verdict and
the same figures (attack records, defense rows). Target (issue #23): <= 1.5 minutes wall on 2
quiet cores. Writes ``benchmarks/results/audit_time.{json,md}``.

    python benchmarks/audit_time.py [--workers 2] [--extra --budget quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEYS = ("attack", "batch_size", "seed", "status", "psnr", "ssim", "mismatch", "chosen")


def run(workers: int, extra: list[str], out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gradleak.cli", "audit", "--quiet", "--workers", str(workers), *extra,
                    "--out", str(out)], check=True)
    return time.perf_counter() - start, json.loads((out / "results.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further audit arguments")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seq_s, seq = run(1, args.extra, Path(tmp) / "seq")
        par_s, par = run(args.workers, args.extra, Path(tmp) / "par")
    same_records = [{k: r.get(k) for k in KEYS} for r in seq["attacks"]["records"]] == \
        [{k: r.get(k) for k in KEYS} for r in par["attacks"]["records"]]
    rows = lambda res: [{k: r.get(k) for k in ("defense", "client_accuracy", "psnr", "ssim")}  # noqa: E731
                        for r in (res.get("defenses") or {}).get("rows", [])]
    result = {"cores": len(os.sched_getaffinity(0)), "workers": args.workers, "extra": args.extra,
              "sequential_s": seq_s, "parallel_s": par_s, "speedup": seq_s / par_s,
              "same_verdict": seq["verdict"]["level"] == par["verdict"]["level"]
              and seq["verdict"]["headline"] == par["verdict"]["headline"],
              "same_records": same_records, "same_defense_rows": rows(seq) == rows(par),
              "verdict": par["verdict"]["level"], "timings_parallel": par["timings"],
              "timings_sequential": seq["timings"], "target_s": 90.0, "met": par_s <= 90.0,
              "load_average_at_end": os.getloadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audit_time.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "audit_time.md").write_text(
        f"# Default audit wall time (issue #23)\n\n`gradleak audit {' '.join(args.extra)}` on {result['cores']} cores: "
        f"{seq_s:.0f} s with `--workers 1`, {par_s:.0f} s with `--workers {args.workers}` "
        f"(x{result['speedup']:.2f}); target <= 90 s: {'met' if result['met'] else 'missed'}. Same verdict: "
        f"{result['same_verdict']}; same attack records: {same_records}; same defense rows: "
        f"{result['same_defense_rows']}. Load average at the end {result['load_average_at_end'][0]:.1f} "
        f"(a busy machine slows both runs).\n\nStage times (s), parallel: "
        + ", ".join(f"{k} {v:.0f}" for k, v in par["timings"].items())
        + "; sequential: " + ", ".join(f"{k} {v:.0f}" for k, v in seq["timings"].items()) + ".\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
