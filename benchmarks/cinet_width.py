"""CI-Net ablation (the paper's Figure 4): SSIM against the generator width at a fixed batch.

The paper varies the channels of the same convolutional generator from 8 to 512 against a
0.33M-parameter victim: widths 8 and 16 (under-parameterized, P(G) < P(F)) fail, 128 reaches
SSIM ~1, and 512 (P(G) ~ 60 P(F)) still works. Here the victim is the table's (``cinet_bench.
Setting``); each width runs ``--iterations`` Adam steps of CI-Net, everything else at the attack's
defaults. The vertical position where P(G) first exceeds P(F) is printed in the table.

    nice -n 10 python benchmarks/cinet_width.py            # widths 8..512, batch 8, seeds 0-2, 100 steps
    nice -n 10 python benchmarks/cinet_width.py --quick    # widths 8..128, seed 0, 100 steps

Measured CPU per cell (one thread, batch 8, 100 steps): 7-11 s for widths 8-64, 23 s for 128;
256 and 512 cost about 4x and 16x that (not run here: about 27 CPU-minutes for three seeds).
Outputs (resumable via ``<out>/runs.jsonl``): ``width.json``, ``width.md``, ``ssim_vs_width.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from cinet_bench import DEFAULT_SETTING, SETTINGS, cell, client, run_cell, run_cells, setup_threads, summarise

from gradleak.attacks.cinet import CINetConfig, copies_for, generator_parameters
from gradleak.outdir import write_json
from gradleak.report.charts import save_series_plot
from gradleak.sweep.journal import Journal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="widths 8..128, seed 0, 100 steps")
    parser.add_argument("--widths", type=int, nargs="+", default=None, help="default 8 16 ... 512 (quick: 8..128)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (quick: 0)")
    parser.add_argument("--iterations", type=int, default=100, help="CI-Net Adam steps (default 100)")
    parser.add_argument("--lr", type=float, default=None, help="CI-Net Adam lr (default: the attack's)")
    parser.add_argument("--weights", default="per-sample", choices=("per-sample", "shared"),
                        help="one generator copy per sample (the attack's default) or one shared generator")
    parser.add_argument("--setting", default=DEFAULT_SETTING, choices=sorted(SETTINGS), help="victim and data (cinet_bench)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results/cinet_width[_quick]")
    args = parser.parse_args()
    widths = args.widths or ([8, 16, 32, 64, 128] if args.quick else [8, 16, 32, 64, 128, 256, 512])
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    iterations = args.iterations
    out = args.out or Path("benchmarks/results/cinet_width" + ("_quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    setup_threads(args.threads)
    setting = SETTINGS[args.setting]
    journal = Journal(out / "runs.jsonl")
    cells = []
    for seed in seeds:
        for w in widths:
            options = {"iterations": iterations, "width": w, "weights": args.weights,
                       **({"lr": args.lr} if args.lr else {})}
            params = {"width": w, "batch_size": args.batch_size, "seed": seed, "options": options,
                      "setting": setting.name}
            thunk = lambda w=w, seed=seed, options=options: run_cell(  # noqa: E731
                setting=setting, attack="cinet", options=options, batch_size=args.batch_size, seed=seed)
            lr = (f"-lr{args.lr:g}" if args.lr else "") + ("-shared" if args.weights == "shared" else "")
            prefix = "" if setting.name == "binary" else f"{setting.name}-"  # binary: the older journals' keys
            cells.append((f"{prefix}cinet-w{w}-b{args.batch_size}-s{seed}-i{iterations}{lr}", params, thunk))
    run_cells(journal, cells)
    keys = {c[0] for c in cells}
    summary = summarise([r for r in journal.records if r["cell"] in keys], lambda p: (p["width"],))
    observation, _ = client(setting, args.batch_size, seeds[0])
    victim = sum(v.numel() for v in observation.update.values())
    channels, height, width = observation.input_shape
    cfg = CINetConfig(weights=args.weights)
    copies = copies_for(cfg, args.batch_size)
    count = {w: generator_parameters(channels=channels, side=max(height, width), features=w, latent_dim=cfg.latent_dim,
                                     convs_per_stage=cfg.convs_per_stage, copies=copies, skips=cfg.skips) for w in widths}
    lines = [f"# CI-Net: SSIM vs generator width (batch {args.batch_size}, {iterations} Adam steps, seeds {seeds})", "",
             f"Setting {setting.name!r}: {setting.describe()}; P(F) = {victim} parameters; automatic width = "
             f"smallest multiple of 8 with P(G) > P(F); generator weights {cfg.weights} (P(G) counts every copy). "
             f"Mean +- std over seeds.", "",
             "| width | P(G) | P(G)/P(F) | SSIM | FSIM | PSNR (dB) | CPU s |", "|---|---|---|---|---|---|---|"]
    for w in widths:
        row = summary.get((w,))
        if row is not None:
            lines.append(f"| {w} | {count[w]} | {count[w] / victim:.2f} | {cell(row, 'ssim', 3)} | {cell(row, 'fsim', 3)} "
                         f"| {cell(row, 'psnr')} | {cell(row, 'cpu_seconds', 0)} |")
    done = [w for w in widths if (w,) in summary]
    write_json(out / "width.json", {"setting": dataclasses.asdict(setting), "batch_size": args.batch_size,
                                    "iterations": iterations, "seeds": seeds, "victim_parameters": victim,
                                    "rows": [{"width": w, "generator_parameters": count[w], **summary[(w,)]} for w in done]})
    (out / "width.md").write_text("\n".join(lines) + "\n")
    series = {"cinet": (done, [summary[(w,)]["ssim"] for w in done], [summary[(w,)]["ssim_std"] for w in done])}
    crossing = min((w for w in widths if count[w] > victim), default=None)
    save_series_plot(series, out / "ssim_vs_width.png", xlabel="generator width (channels)", ylabel="SSIM",
                     title=f"CI-Net SSIM vs width (batch {args.batch_size}; P(G) > P(F) from width {crossing})")
    print(json.dumps({"victim_parameters": victim, "first_overparameterized_width": crossing}))
    print((out / "width.md").read_text())


if __name__ == "__main__":
    main()
