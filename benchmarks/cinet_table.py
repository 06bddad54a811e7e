"""CI-Net's Table 1 on histology: SSIM, FSIM, PSNR, LPIPS of dlg, idlg, ig, gias and cinet at
batch sizes 16, 32 and 64, mean +- std over model seeds.

The paper (CIFAR-10, sigmoid ResNet-18, batch 128, A100): DLG SSIM 0.10, iDLG 0.10, IG 0.16,
GIAS 0.26, CI-Net 0.98. Here the victim and data are a ``cinet_bench.SETTINGS`` entry, sized for
2 shared CPU cores: ``allred`` (default; nine-class histology against a tanh MLP, the setting
where a large batch is identifiable) or ``binary`` (two-class histology against IG's ConvNet w8,
the earlier tables); docs/cinet.md says why.

Same budget for every attack: ``--iterations`` gradient evaluations (a forward pass and a double
backward through the victim). DLG/iDLG get ``iterations / 20`` L-BFGS steps of 20 evaluations;
GIAS gets one restart of ``iterations / 2`` latent steps then ``iterations / 2`` fine-tuning steps;
IG and CI-Net get ``iterations`` Adam steps. The seed picks the client batch, the victim's
initialisation and pre-training, and the attack's random start.

    nice -n 10 python benchmarks/cinet_table.py            # full: batch 16/32/64, seeds 0-2, 100 evaluations
    # the committed allred table (about 2 CPU-hours; GIAS at batch 64 alone ~9 CPU-minutes per seed):
    nice -n 10 python benchmarks/cinet_table.py --iterations 2000 --cinet-lr 3e-3 --out benchmarks/results/cinet_table_allred
    nice -n 10 python benchmarks/cinet_table.py --quick    # batch 16, seeds 0-2, 50 evaluations
    (the binary results used ``--setting binary --prior-steps 600``, prior in runs/cinet_prior; allred
    trains its prior with the default 1500 steps into runs/cinet_prior_allred, ~9 CPU-minutes)

Measured CPU (one thread), binary at 100 evaluations: 14-19 s per batch-16 cell and 22-34 s per
batch-32 cell. Allred at 2000 evaluations: 30-60 s per dlg/idlg/ig cell, cinet 130-140 s (batch
16-64: the automatic width shrinks as copies grow), gias 160 / 290 / 530 s at batch 16 / 32 / 64.
Several processes may share one ``<out>`` (e.g. one per seed and batch, ``--seeds S --batches B``):
finished cells are kept in ``<out>/runs.jsonl`` and skipped, and an interrupted run resumes. Outputs:
``<out>/table.json``, ``<out>/table.md``, ``<out>/ssim_vs_batch.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from cinet_bench import DEFAULT_SETTING, SETTINGS, Setting, cell, client, ensure_prior, run_cell, run_cells, setup_threads, summarise

from gradleak.metrics import evaluate_images
from gradleak.outdir import write_json
from gradleak.report.charts import save_series_plot
from gradleak.sweep.journal import Journal

ATTACKS = ("dlg", "idlg", "ig", "gias", "cinet")
PAPER = {"dlg": 0.10, "idlg": 0.10, "ig": 0.16, "gias": 0.26, "cinet": 0.98}  # SSIM, CIFAR-10, batch 128


def attack_options(attack: str, *, evaluations: int, prior: Path | None, cinet_lr: float | None) -> dict[str, Any]:
    """The same number of gradient evaluations for every attack (see the module docstring)."""
    if attack in ("dlg", "idlg"):
        return {"iterations": max(1, evaluations // 20), "lbfgs_inner": 20}
    if attack == "gias":
        half = max(1, evaluations // 2)
        return {"prior": str(prior), "restarts": 1, "iterations": half, "gias_iterations": half}
    if attack == "cinet" and cinet_lr is not None:
        return {"iterations": evaluations, "lr": cinet_lr}
    return {"iterations": evaluations}


def flat_reference(setting: Setting, batch_size: int, seeds: list[int]) -> dict[str, Any]:
    """SSIM/FSIM/PSNR of one constant image at the batch's mean colour: what "nothing
    recovered but the colour" scores (it uses the ground truth, so it is a yardstick, not an attack)."""
    rows = []
    for seed in seeds:
        _, truth = client(setting, batch_size, seed)
        flat = truth.inputs.mean(dim=(0, 2, 3), keepdim=True).expand_as(truth.inputs)
        rows.append({"params": {"seed": seed}, "metrics": evaluate_images(reconstruction=flat, truth=truth.inputs)})
    return summarise(rows, lambda p: ())[()]


def markdown(summary: dict[tuple, dict[str, Any]], meta: dict[str, Any]) -> str:
    batches = sorted({b for _, b in summary})
    lines = [
        "# CI-Net Table 1 on histology patches (32x32 RGB)", "",
        f"Setting {meta['setting']['name']!r}: {meta['description']} ({meta['victim_parameters']} victim parameters; "
        f"paper Sec. 2.1 assumes known labels). Budget: {meta['evaluations']} gradient evaluations "
        f"per attack. Seeds {meta['seeds']}; mean +- std over seeds. LPIPS n/a: no pretrained VGG weights offline.",
        f"CPU time of all cells: {meta['cpu_seconds']:.0f} s ({meta['threads']} thread(s), nice 10, machine shared "
        f"with other jobs; wall {meta['wall_seconds']:.0f} s).", "",
    ]
    for b in batches:
        lines += [f"## batch {b}", "",
                  "| attack | seeds | SSIM | FSIM | PSNR (dB) | LPIPS | CPU s per run | paper SSIM (b128) |",
                  "|---|---|---|---|---|---|---|---|"]
        for a in ATTACKS:
            row = summary.get((a, b))
            if row is None:
                continue
            lines.append(f"| {a} | {len(row['seeds'])} | {cell(row, 'ssim', 3)} | {cell(row, 'fsim', 3)} | {cell(row, 'psnr')} | n/a | "
                         f"{cell(row, 'cpu_seconds', 0)} | {PAPER[a]:.2f} |")
        flat = summary.get(("flat", b))
        if flat is not None:
            lines.append(f"| *flat mean colour (yardstick, uses the truth)* | {len(flat['seeds'])} | {cell(flat, 'ssim', 3)} "
                         f"| {cell(flat, 'fsim', 3)} | {cell(flat, 'psnr')} | n/a | - | - |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 16 only, 50 evaluations")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="default 16 32 64 (quick: 16)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=ATTACKS)
    parser.add_argument("--iterations", type=int, default=None, help="gradient evaluations per attack (default 100, quick 50)")
    parser.add_argument("--prior", type=Path, default=None,
                        help="GIAS prior, trained here if missing (default runs/cinet_prior[_<setting>])")
    parser.add_argument("--cinet-lr", type=float, default=None,
                        help="CI-Net's Adam lr (default: the attack's 1e-3; the allred table uses 3e-3, the lr "
                             "with the lowest gradient loss after 1500 steps among 1e-3/3e-3/1e-2 on seed 0)")
    parser.add_argument("--prior-steps", type=int, default=1500, help="`gradleak prior train --steps` when training it")
    parser.add_argument("--setting", default=DEFAULT_SETTING, choices=sorted(SETTINGS), help="victim and data (cinet_bench)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results/cinet_table[_quick]")
    args = parser.parse_args()
    batches = args.batches or ([16] if args.quick else [16, 32, 64])
    evaluations = args.iterations or (50 if args.quick else 100)
    out = args.out or Path("benchmarks/results/cinet_table" + ("_quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    setup_threads(args.threads)
    setting = SETTINGS[args.setting]
    prior_path = args.prior or Path("runs/cinet_prior" + ("" if setting.name == "binary" else f"_{setting.name}"))
    prior = ensure_prior(prior_path, setting=setting, steps=args.prior_steps) if "gias" in args.attacks else None
    journal = Journal(out / "runs.jsonl")
    cells = []
    for seed in args.seeds:  # seed-major: a partial run still covers every batch size
        for b in batches:
            for a in args.attacks:
                options = attack_options(a, evaluations=evaluations, prior=prior, cinet_lr=args.cinet_lr)
                params = {"attack": a, "batch_size": b, "seed": seed, "evaluations": evaluations, "options": options,
                          "setting": setting.name}
                thunk = (lambda a=a, b=b, seed=seed, options=options:
                         run_cell(setting=setting, attack=a, options=options, batch_size=b, seed=seed))
                prefix = "" if setting.name == "binary" else f"{setting.name}-"  # binary: the older journals' keys
                lr = f"-lr{args.cinet_lr:g}" if a == "cinet" and args.cinet_lr is not None else ""
                cells.append((f"{prefix}{a}-b{b}-s{seed}-e{evaluations}{lr}", params, thunk))
    wall = time.perf_counter()
    run_cells(journal, cells)
    # Every finished cell at this budget, whichever process ran it (the table is the union).
    # (same setting, budget and attack options as this invocation; other lrs etc. stay in the journal)
    records = [r for r in Journal(journal.path).records
               if r["params"]["evaluations"] == evaluations and r["params"].get("setting", "binary") == setting.name
               and r["params"]["options"] == attack_options(r["params"]["attack"], evaluations=evaluations,
                                                            prior=prior, cinet_lr=args.cinet_lr)]
    summary = summarise(records, lambda p: (p["attack"], p["batch_size"]))
    batches = sorted({b for _, b in summary})
    for b in batches:  # the yardstick of "nothing recovered but the colour", per batch size
        summary[("flat", b)] = flat_reference(setting, b, sorted({r["params"]["seed"] for r in records
                                                                 if r["params"]["batch_size"] == b}))
    meta = {
        "setting": dataclasses.asdict(setting), "description": setting.describe(), "evaluations": evaluations, "threads": args.threads,
        "seeds": sorted({r["params"]["seed"] for r in records}),
        "victim_parameters": records[0]["metrics"]["victim_parameters"] if records else None,
        "cpu_seconds": sum(r["metrics"]["cpu_seconds"] for r in records),
        "wall_seconds": sum(r["metrics"]["wall_seconds"] for r in records),
        "this_session_wall": time.perf_counter() - wall,
        "prior": str(prior) if prior else None, "paper_ssim_batch128": PAPER,
    }
    write_json(out / "table.json", {"meta": meta, "rows": [{"attack": a, "batch_size": b, **row}
                                                           for (a, b), row in sorted(summary.items(), key=str)]})
    (out / "table.md").write_text(markdown(summary, meta))
    series = {}
    for a in (*ATTACKS, "flat"):
        done = [b for b in batches if (a, b) in summary]
        if done:
            series[a if a != "flat" else "flat mean colour (yardstick)"] = (done, [summary[(a, b)]["ssim"] for b in done], [summary[(a, b)]["ssim_std"] for b in done])
    save_series_plot(series, out / "ssim_vs_batch.png", xlabel="batch size", ylabel="SSIM (mean +- std over seeds)",
                     title=f"SSIM vs batch size ({setting.dataset} 32 px, {evaluations} evaluations)", hlines={"goal 0.9": 0.9})
    print(json.dumps(meta, indent=1))
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main()
