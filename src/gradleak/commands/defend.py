"""``gradleak defend``: client accuracy and attack success for each defense setting.

Writes ``config.json``, ``defenses.json`` (one row per defense), ``defenses.md`` (the table),
``frontier.png`` (client accuracy against attack PSNR) and ``reconstructions.png`` (truth row,
then one row per defense) into ``--out``, atomically. ``--quick`` shrinks the budget (20
FedAvg rounds, 3 victims, 200 attack iterations, 200 reference-classifier steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .. import __version__


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("defend", help="evaluate defenses: client accuracy vs attack success (privacy-utility)")
    p.add_argument("--dataset", required=True, help="dataset name, e.g. histology, medmnist:bloodmnist")
    p.add_argument("--model", required=True, help="victim model, e.g. lenet")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="model constructor option (repeatable), e.g. width=16")
    p.add_argument("--defenses", nargs="+", required=True, metavar="SPEC",
                   help="defense specs: none noise:S laplace:B clip:C prune:P prune-global:P dpsgd:SIGMA "
                        "secagg:K batch:N steps:K perturb[:LAMBDA] bido[:A1] (see docs/defenses.md)")
    p.add_argument("--attack", nargs="+", default=["ig"], metavar="NAME",
                   help="attack(s); with several, each row reports the strongest (highest mean PSNR). Default ig")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="attack config option, given to each attack that has it (repeatable)")
    p.add_argument("--non-adaptive", action="store_true", help="the attacker ignores the defense (default: adaptive)")
    p.add_argument("--adaptive-only", action="store_true",
                   help="skip the non-adaptive attacker that is otherwise run beside the adaptive one on the same updates")
    p.add_argument("--victims", type=int, default=None, help="attacked updates per defense (default 8; quick 3)")
    p.add_argument("--batch-size", type=int, default=1, help="samples per attacked update (default 1)")
    p.add_argument("--rounds", type=int, default=None, help="FedAvg rounds of the utility run (default 30; quick 20)")
    p.add_argument("--clients", type=int, default=4, help="FedAvg clients (default 4)")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--grayscale", action="store_true")
    p.add_argument("--data-root", default=None, help="directory with dataset files (MedMNIST .npz)")
    p.add_argument("--quick", action="store_true", help="small budget (about 3 minutes on 2 cores for 6 defenses)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on these small models more threads cost more than they give)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_defend)


def _config(args: argparse.Namespace):
    from ..cli import _check_device, _key_values
    from ..defenses.evaluation import DefendConfig, quick_config
    from ..defenses.federated import FederatedConfig
    from ..errors import GradleakError

    for flag in ("victims", "rounds", "batch_size", "clients", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise GradleakError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    config = DefendConfig(
        dataset=args.dataset, model=args.model, model_options=_key_values(args.model_option, flag="--model-option"),
        attack=args.attack[0], extra_attacks=tuple(args.attack[1:]),
        attack_options=_key_values(args.option, flag="--option"), adaptive=not args.non_adaptive,
        side_by_side=not args.adaptive_only,
        batch_size=args.batch_size, federated=FederatedConfig(clients=args.clients), seed=args.seed,
        image_size=args.image_size, grayscale=args.grayscale, data_root=args.data_root,
        device=_check_device(args.device),
    )
    if args.quick:
        config = quick_config(config)
    if args.rounds is not None:
        config = dataclasses.replace(config, federated=dataclasses.replace(config.federated, rounds=args.rounds))
    if args.victims is not None:
        config = dataclasses.replace(config, victims=args.victims)
    return config


def cmd_defend(args: argparse.Namespace) -> None:
    import torch
    from tqdm import tqdm

    from ..cli import _fmt
    from ..defenses.evaluation import check_config, evaluate_outcomes, work_units
    from ..defenses.report import markdown_table, save_frontier_plot
    from ..defenses.rero import violations
    from ..outdir import atomic_directory, write_json
    from ..report.plots import save_image_grid

    config = _config(args)
    check_config(args.defenses, config)  # every spec, attack and option before any training
    torch.set_num_threads(args.threads)
    bar = tqdm(total=work_units(args.defenses, config), desc="defend", unit="step", file=sys.stderr,
               disable=args.quiet)
    evaluator, outcomes = evaluate_outcomes(args.defenses, config=config,
                                            progress=lambda stage, n: (bar.set_postfix_str(stage), bar.update(n)))
    bar.close()
    rows = [o.row for o in outcomes]
    with atomic_directory(args.out) as tmp:
        write_json(tmp / "config.json", {"command": "defend", "version": __version__, "defenses": args.defenses,
                                         "quick": args.quick, "threads": args.threads, "config": config.to_json(),
                                         "split": evaluator.splits.describe(),
                                         "reference_accuracy": evaluator.reference_accuracy})
        write_json(tmp / "defenses.json", rows)
        (tmp / "defenses.md").write_text(
            f"# Defenses on {args.dataset} / {args.model}, attack {' / '.join(config.attacks)}\n\n"
            + markdown_table(rows)
            + f"\nReference classifier (attacker's data) test accuracy: {evaluator.reference_accuracy:.3f}. "
              f"{config.victims} attacked update(s) of {config.batch_size} sample(s) per defense "
              f"(mean ± std over them); {config.federated.rounds} FedAvg rounds, {config.federated.clients} clients.\n"
            + f"\n'identified': share of private samples whose reconstruction is closer to them than to each of "
              f"{config.rero_candidates - 1} other samples (chance {1 / config.rero_candidates:.2f}); 'DP bound': the most any "
              f"informed attacker can reach in that game under the defense's Gaussian-DP guarantee "
              f"(Phi(Phi^-1(kappa) + mu), see docs/defenses.md).\n"
            + "\nPSNR, SSIM, MSE and attacker accuracy are the defender's worst case: the attack with the highest mean "
              "PSNR against the private samples. 'attacker's pick': per update, the reconstruction that best reproduces "
              "the defended update (a choice the attacker makes without the private data). 'non-adaptive': the same "
              "attacks ignoring the defense, on the same updates; the adaptive figures decide.\n")
        save_frontier_plot(rows, tmp / "frontier.png", title=f"{args.dataset} / {args.model} / {rows[0]['attack']}")
        shown = [o.first(config.batch_size) for o in outcomes]  # the samples every defense's victims share
        if evaluator.records:  # one heatmap panel per defense: truth | reconstruction | error
            from ..report.heatmaps import save_record_heatmaps

            stacked = torch.cat([recon for _, recon in shown])
            save_record_heatmaps(torch.cat([shown[0][0]] * len(shown)), stacked, tmp / "reconstructions.png",
                                 title="records per defense (" + ", ".join(o.row["defense"] for o in outcomes) + ")")
        else:
            save_image_grid([shown[0][0].clamp(0, 1)] + [recon for _, recon in shown],
                            tmp / "reconstructions.png", row_labels=["truth"] + [o.row["defense"] for o in outcomes])
    for r in rows:
        leak = (f"feature_acc={_fmt(r['feature_accuracy'])} blind={_fmt(r.get('baseline_feature_accuracy'))}"
                if evaluator.records else f"psnr={_fmt(r['psnr'])} ssim={_fmt(r['ssim'])}")
        print(f"{r['defense']:>16}  client_acc={_fmt(r['client_accuracy'])} {leak} attacker_acc={_fmt(r['attacker_accuracy'])} eps={_fmt(r['epsilon'])} "
              f"identified={_fmt(r.get('rero_success'))} bound={_fmt(r.get('rero_bound'))}"
              + (f" non_adaptive_psnr={_fmt(r['non_adaptive_psnr'])}" if r.get("non_adaptive_psnr") is not None else ""))
    print(f"-> {args.out}")
    broken = violations(rows)
    for line in broken:  # measured above the bound: the DP mechanism or its accounting is wrong
        print(f"gradleak: BOUND VIOLATED: {line}", file=sys.stderr)
    return 1 if broken else 0
