"""``gradleak sweep GRID.yaml --out DIR`` and ``gradleak report DIR``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_sweep(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from ..sweep import load_grid, run_sweep
    from ..sweep.journal import Journal
    from ..sweep.run import EXECUTORS, RESULTS_FILE, ExecutorOptions

    EXECUTORS.get(args.executor)
    grid = load_grid(args.grid)
    done = Journal(args.out / RESULTS_FILE).done if (args.out / RESULTS_FILE).is_file() else set()
    remaining = sum(1 for c in {c.id for c in grid.cells} if c not in done)
    failures = []
    with tqdm(total=len({c.id for c in grid.cells}), initial=len({c.id for c in grid.cells}) - remaining,
              desc="sweep", unit="cell", file=sys.stderr, disable=args.quiet, dynamic_ncols=True) as bar:
        def on_record(record):
            bar.update(1)
            if record.get("status") != "ok":
                failures.append(record)
                bar.write(f"gradleak: note: cell {record['cell']} failed: {record.get('error')}", file=sys.stderr)

        options = ExecutorOptions(workers=args.workers, address=args.address)
        run_sweep(grid.cells, out=args.out, executor=args.executor, options=options, on_record=on_record)
    print(f"{len({c.id for c in grid.cells})} cells ({remaining} run now, {len(failures)} failed) -> "
          f"{args.out / RESULTS_FILE}")


def cmd_report(args: argparse.Namespace) -> None:
    from ..cli import _print_table
    from ..sweep.aggregate import pm, write_sweep_report

    rows = write_sweep_report(args.directory)
    _print_table(("dataset", "model", "attack", "defense", "batch", "seeds", "psnr (dB)", "ssim"),
                 [(r["dataset"], r["model"], r["attack"], r["defense"], str(r["batch_size"]), str(len(r["seeds"])),
                   pm(r["psnr_mean"], r["psnr_std"]), pm(r["ssim_mean"], r["ssim_std"], 3)) for r in rows])
    print(f"report written to {args.directory / 'report'}", file=sys.stderr)


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid of scenarios x attacks x defenses x seeds (resumable)")
    p.add_argument("grid", type=Path, help="GRID.yaml: lists of datasets, models, attacks, batch_sizes, defenses, seeds")
    p.add_argument("--out", required=True, type=Path, help="sweep directory (results.jsonl + cells/); rerun to resume")
    p.add_argument("--executor", default="local", help="local (processes on this machine) or ray")
    p.add_argument("--workers", type=int, default=1, help="cells run in parallel (default 1)")
    p.add_argument("--address", default=None, help="ray: address of an existing cluster (default: start a local Ray)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep, out_replaced=False)  # --out is added to (resumed), not replaced

    p = sub.add_parser("report", help="aggregate a sweep directory: mean +- std over seeds, tables and plots")
    p.add_argument("directory", type=Path, help="the --out directory of `gradleak sweep`")
    p.set_defaults(func=cmd_report)
