#!/usr/bin/env python
"""Audit a real Flower federation for gradient leakage (Flower's simulation engine, Ray backend).

    pip install -e ".[flower]"
    python examples/flower_audit/run.py --out runs/flower_audit

Virtual hospitals (Flower SuperNodes) each hold a disjoint shard of the embedded histology
patches and train the global LeNet with FedAvg; the server's strategy is Flower's FedAvg
wrapped in gradleak's LeakageAudit, which attacks the chosen clients' updates every round
and writes leakage.jsonl, round_XXX/client_N/ and report.html under --out. Aggregation is
untouched: the federated model is bit-identical to an unaudited run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/flower_audit"), help="audit output folder")
    p.add_argument("--clients", type=int, default=2, help="virtual hospitals (SuperNodes), default 2")
    p.add_argument("--rounds", type=int, default=3, help="FedAvg rounds, default 3")
    p.add_argument("--batch-size", type=int, default=1, help="samples per client update, default 1 (worst case)")
    p.add_argument("--attack", default="idlg", help="attack the auditor runs (see `gradleak attacks`), default idlg")
    p.add_argument("--iterations", type=int, default=60, help="attack iterations, default 60")
    p.add_argument("--audit-clients", type=int, default=None, help="clients attacked per round (default: all)")
    p.add_argument("--dataset", default="histology", help="embedded data set, default histology")
    p.add_argument("--model", default="lenet", help="victim model, default lenet")
    p.add_argument("--verbose", action="store_true", help="show Flower's and Ray's INFO/DEBUG lines (default: warnings only)")
    args = p.parse_args(argv)

    import torch

    from gradleak.fl.flower_demo import DemoConfig, run_demo

    torch.set_num_threads(1)  # LeNet-sized attacks gain nothing from threads; the clients run beside them
    logging.basicConfig(level=logging.WARNING)
    if args.out.exists() and any(args.out.iterdir()):
        print(f"run.py: error: {args.out} is not empty; choose a new --out", file=sys.stderr)
        return 2
    config = DemoConfig(out=str(args.out), dataset=args.dataset, model=args.model, num_clients=args.clients,
                        num_rounds=args.rounds, batch_size=args.batch_size, attack=args.attack,
                        attack_options={"iterations": args.iterations} if args.iterations else {},
                        audit_clients=args.audit_clients, verbose=args.verbose)
    records = run_demo(config)
    for r in records:
        m = r.get("metrics") or {}
        shown = f"PSNR {m['psnr']:.1f} dB, SSIM {m['ssim']:.3f}" if m.get("psnr") is not None else r.get("error", "")
        print(f"round {r['round']} client {r['node_id']}: {r['status']}  {shown}")
    print(json.dumps({"audited_updates": len(records), "report": str(args.out / "report.html")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
