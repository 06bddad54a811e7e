"""``gradleak defend``: client accuracy and attack success for each defense setting.

Writes ``config.json``, ``defenses.json`` (one row per defense), ``defenses.md`` (the table),
``frontier.png`` (client accuracy against attack PSNR) and ``reconstructions.png`` (truth row,
then one row per defense) into ``--out``, atomically.
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
    p.add_argument("--defenses", nargs="+", required=True, metavar="SPEC",
                   help="defense specs: none noise:S laplace:B clip:C prune:P prune-global:P dpsgd:SIGMA "
                        "secagg:K batch:N steps:K perturb[:LAMBDA] bido[:A1]")
    p.add_argument("--attack", default="ig", help="attack name (see `gradleak attacks`; default ig)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="attack config option (repeatable)")
    p.add_argument("--non-adaptive", action="store_true", help="the attacker ignores the defense (default: adaptive)")
    p.add_argument("--victims", type=int, default=None, help="attacked updates per defense (default 6; quick 2)")
    p.add_argument("--batch-size", type=int, default=1, help="samples per attacked update (default 1)")
    p.add_argument("--rounds", type=int, default=None, help="FedAvg rounds of the utility run (default 30; quick 12)")
    p.add_argument("--clients", type=int, default=4, help="FedAvg clients (default 4)")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--grayscale", action="store_true")
    p.add_argument("--data-root", default=None, help="directory with dataset files (MedMNIST .npz)")
    p.add_argument("--quick", action="store_true", help="small budget (about 3 minutes on 2 cores for 6 defenses)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_defend)


def cmd_defend(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from ..cli import _check_device, _fmt, _key_values
    from ..defenses.evaluation import DefendConfig, Evaluator, check_specs, quick_config
    from ..defenses.federated import FederatedConfig
    from ..defenses.report import markdown_table, save_frontier_plot
    from ..errors import GradleakError
    from ..outdir import atomic_directory, write_json
    from ..report.plots import save_image_grid

    device = _check_device(args.device)
    check_specs(args.defenses, attack=args.attack)
    for flag in ("victims", "rounds", "batch_size", "clients"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise GradleakError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    fed = FederatedConfig(clients=args.clients)
    if args.rounds is not None:
        fed = dataclasses.replace(fed, rounds=args.rounds)
    config = DefendConfig(
        dataset=args.dataset, model=args.model, attack=args.attack,
        attack_options=_key_values(args.option, flag="--option"), adaptive=not args.non_adaptive,
        batch_size=args.batch_size, federated=fed, seed=args.seed, image_size=args.image_size,
        grayscale=args.grayscale, data_root=args.data_root, device=device,
    )
    if args.quick:
        config = quick_config(config)
        if args.rounds is not None:
            config = dataclasses.replace(config, federated=dataclasses.replace(config.federated, rounds=args.rounds))
    if args.victims is not None:
        config = dataclasses.replace(config, victims=args.victims)
    from ..attacks import create_attack

    create_attack(config.attack, **config.attack_options)  # bad attack options fail before training

    bar = tqdm(total=len(args.defenses), desc="defenses", unit="defense", file=sys.stderr, disable=args.quiet)
    evaluator = Evaluator(config)
    outcomes = []
    for spec in args.defenses:
        bar.set_postfix_str(spec)
        outcome = evaluator.run(spec)
        outcome.row["reference_accuracy"] = evaluator.reference_accuracy
        outcomes.append(outcome)
        bar.update(1)
    bar.close()
    rows = [o.row for o in outcomes]
    with atomic_directory(args.out) as tmp:
        write_json(tmp / "config.json", {"command": "defend", "version": __version__, "defenses": args.defenses,
                                         "quick": args.quick, "config": config.to_json(),
                                         "split": evaluator.splits.describe(),
                                         "reference_accuracy": evaluator.reference_accuracy})
        write_json(tmp / "defenses.json", rows)
        (tmp / "defenses.md").write_text(
            f"# Defenses on {args.dataset} / {args.model}, attack {args.attack}\n\n" + markdown_table(rows)
            + f"\nReference classifier (attacker's data) test accuracy: {evaluator.reference_accuracy:.3f}. "
              f"{config.victims} attacked update(s) of {config.batch_size} sample(s) per defense; "
              f"{config.federated.rounds} FedAvg rounds, {config.federated.clients} clients.\n")
        save_frontier_plot(rows, tmp / "frontier.png", title=f"{args.dataset} / {args.model} / {args.attack}")
        shown = min(len(o.truth) for o in outcomes)  # secagg/batch rows hold more samples: show the common first ones
        save_image_grid([outcomes[0].truth[:shown].clamp(0, 1)] + [o.reconstruction[:shown] for o in outcomes],
                        tmp / "reconstructions.png", row_labels=["truth"] + [o.row["defense"] for o in outcomes])
    for r in rows:
        print(f"{r['defense']:>16}  client_acc={_fmt(r['client_accuracy'])} psnr={_fmt(r['psnr'])} "
              f"ssim={_fmt(r['ssim'])} attacker_acc={_fmt(r['attacker_accuracy'])} eps={_fmt(r['epsilon'])}")
    print(f"-> {args.out}")
