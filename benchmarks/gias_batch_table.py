"""The medical replication table for the generative-prior attacks: PSNR / MSE / similarity vs batch size.

For each data set (``histology``; ``medmnist:breastmnist`` when its .npz is under --data-root),
a prior is trained on the attacker's own split (as ``gradleak prior train`` does), then every
batch size x seed draws a client batch outside that split, the victim (DLG LeNet, fedsgd)
computes its gradient, and ``ig``, ``giz``, ``gias`` and ``giml`` invert it with the same
iteration budget (``ig`` gets gias's total: restarts x (iterations + gias_iterations / restarts)).
``giml-updates`` is ``giml`` with ``tasks=updates``: meta-learned from the received update alone,
without the attacker's images (the GIAS talk's attacker).
``similarity`` is 1 - the attack's final cosine gradient loss, as in the seed study's table.
Restarts are chosen inside the attacks by gradient loss; the ground truth only scores.

Results go to a resumable JSONL journal (finished cells are skipped on re-runs), then
``<out>.json`` / ``.md`` / ``.png`` (PSNR vs batch size) and ``<out>_examples.png``.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/gias_batch_table.py            # full (see --help)
    python benchmarks/gias_batch_table.py --quick --out /tmp/gias_quick             # ~1-2 CPU-minutes
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from gradleak.attacks import create_attack
from gradleak.errors import GradleakError
from gradleak.metrics import evaluate_images
from gradleak.priors import PriorTrainConfig, attacker_data, hold_out, load_prior, sample_quality, save_prior, train_prior
from gradleak.report.charts import save_series_plot
from gradleak.report.plots import save_image_grid
from gradleak.scenario import Scenario, simulate
from gradleak.sweep.aggregate import mean_std, pm
from gradleak.sweep.journal import Journal

# The seed study (StyleGAN2 prior, BreastMNIST): PSNR per batch size, quoted from its Table 2.
SEED_STUDY_PSNR = {1: 14.282, 2: 15.313, 4: 15.235, 8: 14.433, 32: 14.400}
METRICS = ("psnr", "mse", "ssim", "similarity", "label_accuracy", "cpu_seconds", "seconds")
# Full budget: the attacks' default iterations with 2 restarts instead of 4 (the machine is shared by
# many jobs); about 600 CPU seconds per seed (1 thread: B=32 ~ half of it), priors ~2 CPU minutes.
FULL = {"batch_sizes": [1, 2, 4, 8, 32], "seeds": [0, 1, 2], "iterations": 500, "restarts": 2,
        "gias_iterations": 500, "meta_steps": 60, "inner_steps": 10, "prior_steps": 1500}
QUICK = {"batch_sizes": [1, 4], "seeds": [0], "iterations": 30, "restarts": 2,
         "gias_iterations": 20, "meta_steps": 3, "inner_steps": 3, "prior_steps": 60}


PRIOR_ATTACKS = ("giz", "gias")  # the attacks that search a trained prior (the others train none)
# Table rows that are a registered attack with fixed options.
VARIANTS = {"giml-updates": ("giml", {"tasks": "updates"})}


def attack_options(name: str, cfg: dict, prior: Path) -> dict:
    """The same gradient-matching budget for every attack (GIML adds its meta-learning)."""
    if name in VARIANTS:
        base, fixed = VARIANTS[name]
        return {**attack_options(base, cfg, prior), **fixed}
    if name == "ig":
        return {"iterations": cfg["iterations"] + cfg["gias_iterations"] // cfg["restarts"], "restarts": cfg["restarts"]}
    options = {"iterations": cfg["iterations"], "restarts": cfg["restarts"]}
    if name in ("giz", "gias"):
        options["prior"] = str(prior)
    if name in ("gias", "giml"):
        options["gias_iterations"] = cfg["gias_iterations"]
    if name == "giml":
        options.update(meta_steps=cfg["meta_steps"], inner_steps=cfg["inner_steps"])
    return options


def ensure_prior(dataset: str, *, directory: Path, cfg: dict, arch: str, data_root: str | None) -> dict:
    """Train (or reuse) the dataset's prior; returns its provenance and quality figures."""
    if (directory / "prior.json").is_file():
        return json.loads((directory / "prior.json").read_text())["info"]
    split = attacker_data(dataset, data_root=data_root)
    train, held = hold_out(split.data.inputs, fraction=0.15)
    config = PriorTrainConfig(arch=arch, steps=cfg["prior_steps"])
    start, cpu = time.perf_counter(), time.process_time()
    with tqdm(total=config.steps, desc=f"prior {dataset}", unit="step", leave=False) as bar:
        gen, _ = train_prior(train, config=config, generator=torch.Generator().manual_seed(0), progress=bar.update)
    info = {"dataset": dataset, "arch": arch, "steps": config.steps, "train_samples": len(train),
            "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
            "attacker_split": split.rule}
    info["quality"] = sample_quality(gen, train=train, held_out=held, generator=torch.Generator().manual_seed(1))
    save_prior(directory, generator=gen, info=info)
    return info


def run_cell(dataset: str, batch: int, seed: int, attacks: list[str], cfg: dict, prior: Path,
             data_root: str | None) -> tuple[list[dict], dict]:
    """All attacks on one client batch; records plus the reconstructions for pictures."""
    split = attacker_data(dataset, data_root=data_root)
    obs, truth = simulate(Scenario(dataset=dataset, model="lenet", batch_size=batch, seed=seed, data_root=data_root),
                          exclude=split.client_exclusion)
    records, pictures = [], {"truth": truth.inputs}
    for name in attacks:
        options = attack_options(name, cfg, prior)
        cpu = time.process_time()
        rec = create_attack(VARIANTS.get(name, (name, {}))[0], **options).run(
            obs, generator=torch.Generator().manual_seed(seed))
        cpu = time.process_time() - cpu
        m = evaluate_images(reconstruction=rec.inputs.clamp(0, 1), truth=truth.inputs,
                            recon_labels=rec.labels, true_labels=truth.labels)
        pictures[name] = rec.inputs.clamp(0, 1)[torch.as_tensor(m["assignment"])]
        records.append({"cell": f"{dataset}|{batch}|{seed}|{name}", "dataset": dataset, "batch_size": batch,
                        "seed": seed, "attack": name, "options": options, "psnr": m["psnr"], "mse": m["mse"],
                        "ssim": m["ssim"], "label_accuracy": m["label_accuracy"],
                        "similarity": 1.0 - rec.gradient_loss, "gradient_loss": rec.gradient_loss,
                        "seconds": rec.seconds, "cpu_seconds": cpu})
    return records, pictures


def examples_path(out: Path, dataset: str) -> Path:
    """Reconstructions of batch 4, seed 0 (kept so a resumed or merged run can still draw them)."""
    return out.with_name(f"{out.name}_examples_{dataset.replace(':', '_')}.safetensors")


def summarise(records: list[dict], attacks: list[str]) -> list[dict]:
    rows = []
    order = {a: i for i, a in enumerate(attacks)}
    keys = sorted({(r["dataset"], r["batch_size"], r["attack"]) for r in records if r["attack"] in order},
                  key=lambda k: (k[0], k[1], order[k[2]]))
    for dataset, batch, attack in keys:
        group = [r for r in records if (r["dataset"], r["batch_size"], r["attack"]) == (dataset, batch, attack)]
        row = {"dataset": dataset, "batch_size": batch, "attack": attack, "seeds": sorted(r["seed"] for r in group)}
        for metric in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std([r[metric] for r in group])
        rows.append(row)
    return rows


def markdown(rows: list[dict], priors: dict, meta: dict) -> str:
    lines = [f"# Generative-prior attacks vs batch size (LeNet, fedsgd)\n",
             f"Command: `{meta['command']}`  ",
             f"Budget: {meta['budget']}  ",
             f"Machine: {meta['machine']}; times are CPU seconds of this process (1 thread), wall in JSON.\n"]
    for dataset, info in priors.items():
        q = info["quality"]
        lines.append(f"Prior for {dataset}: {info['arch']}, {info['steps']} steps on {info['train_samples']} attacker "
                     f"images ({info['cpu_seconds']:.0f} CPU s); held-out projection PSNR "
                     f"{q.get('projection_psnr', float('nan')):.1f} dB (untrained: "
                     f"{q.get('projection_psnr_untrained', float('nan')):.1f}); pooled-pixel FD samples "
                     f"{q.get('fd_samples', float('nan')):.3f} / held-out real {q.get('fd_held_out', float('nan')):.3f}"
                     f" / untrained {q.get('fd_untrained', float('nan')):.3f}.  ")
    lines += ["", "| dataset | batch | attack | seeds | PSNR (dB) | MSE | SSIM | similarity | label acc | CPU s |",
              "|---|---:|---|---:|---|---|---|---|---|---|"]
    for r in rows:
        cells = [pm(r["psnr_mean"], r["psnr_std"]), pm(r["mse_mean"], r["mse_std"], 4), pm(r["ssim_mean"], r["ssim_std"], 3),
                 pm(r["similarity_mean"], r["similarity_std"], 5), pm(r["label_accuracy_mean"], r["label_accuracy_std"]),
                 pm(r["cpu_seconds_mean"], r["cpu_seconds_std"], 0)]
        lines.append(f"| {r['dataset']} | {r['batch_size']} | {r['attack']} | {len(r['seeds'])} | " + " | ".join(cells) + " |")
    lines += ["", "Seed study (StyleGAN2 prior, BreastMNIST), PSNR by batch size: "
              + ", ".join(f"{b}: {v:.1f}" for b, v in SEED_STUDY_PSNR.items()) + " dB."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget: checks the pipeline end to end")
    parser.add_argument("--datasets", nargs="+", default=["histology", "medmnist:breastmnist"])
    parser.add_argument("--data-root", default=None, help="directory holding breastmnist.npz (skipped if absent)")
    parser.add_argument("--attacks", nargs="+", default=["ig", "giz", "gias", "giml", "giml-updates"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--arch", default="dcgan", help="prior architecture (dcgan or stylegan)")
    parser.add_argument("--priors", type=Path, default=Path("runs/gias_batch_table_priors"),
                        help="where the trained priors are cached (not committed)")
    parser.add_argument("--report-only", action="store_true",
                        help="only summarise the journal (e.g. after running seeds in parallel processes)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gias_batch_table/table"),
                        help="output stem: <out>.jsonl journal, .json, .md, .png, _examples.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = dict(QUICK if args.quick else FULL)
    cfg.update({k: v for k, v in (("batch_sizes", args.batch_sizes), ("seeds", args.seeds)) if v})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    prior_root = args.priors / ("quick" if args.quick else "full")
    journal = Journal(args.out.with_suffix(".jsonl"))
    done = journal.done
    priors: dict[str, dict] = {}
    for dataset in args.datasets:
        try:
            attacker_data(dataset, data_root=args.data_root)
        except GradleakError as exc:
            print(f"skipping {dataset}: {exc}")
            continue
        prior = prior_root / dataset.replace(":", "_")
        if any(VARIANTS.get(a, (a, {}))[0] in PRIOR_ATTACKS for a in args.attacks) or (prior / "prior.json").is_file():
            priors[dataset] = ensure_prior(dataset, directory=prior, cfg=cfg, arch=args.arch, data_root=args.data_root)
            load_prior(prior)  # fail early on a bad cached prior
        if args.report_only:
            continue
        for batch, seed in tqdm([(b, s) for b in cfg["batch_sizes"] for s in cfg["seeds"]], desc=dataset, unit="cell"):
            wanted = [a for a in args.attacks if f"{dataset}|{batch}|{seed}|{a}" not in done]
            if not wanted:
                continue
            records, pictures = run_cell(dataset, batch, seed, wanted, cfg, prior, args.data_root)
            for r in records:
                journal.append(r)
            if batch == 4 and seed == 0:
                save_file({k: v.contiguous() for k, v in pictures.items()}, examples_path(args.out, dataset))
    rows = summarise(journal.records, args.attacks)
    meta = {"command": " ".join(["python", "benchmarks/gias_batch_table.py", *sys.argv[1:]]),
            "budget": json.dumps(cfg), "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}"}
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "priors": priors, "rows": rows,
                                                           "seed_study_psnr": SEED_STUDY_PSNR}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(rows, priors, meta))
    for dataset in priors or {r["dataset"]: None for r in rows}:
        series = {}
        for attack in args.attacks:
            mine = [r for r in rows if r["dataset"] == dataset and r["attack"] == attack]
            if mine:
                series[attack] = ([r["batch_size"] for r in mine], [r["psnr_mean"] for r in mine],
                                  [r["psnr_std"] for r in mine])
        series["seed study (BreastMNIST)"] = (list(SEED_STUDY_PSNR), list(SEED_STUDY_PSNR.values()), None)
        suffix = "" if dataset == "histology" else "_" + dataset.replace(":", "_")
        save_series_plot(series, args.out.with_name(args.out.name + suffix + ".png"), title=f"{dataset}: PSNR vs batch size",
                         xlabel="client batch size", ylabel="PSNR (dB)", emphasise=["seed study (BreastMNIST)"])
        if examples_path(args.out, dataset).is_file():
            pics = load_file(examples_path(args.out, dataset))
            names = ["truth", *[a for a in args.attacks if a in pics]]
            save_image_grid([pics[k] for k in names], args.out.with_name(args.out.name + suffix + "_examples.png"),
                            row_labels=names)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
