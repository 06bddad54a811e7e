"""``gradleak tune``: Bayesian optimisation of the tabular attack's regularizer weights.

Runs only on client rounds simulated from the attacker's own split (``--split test`` by
default; victims hold ``train``). Writes into ``--out`` (atomically): ``weights.json`` (give it
to the attack as ``--option weights_file=DIR/weights.json``), ``config.json`` and
``tuning.png`` (log10 FMSE per trial).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import _scenario_arguments

    p = sub.add_parser("tune", help="Bayesian optimisation (Optuna) of attack prior weights on the attacker's own data")
    _scenario_arguments(p, required=True)
    p.add_argument("--attack", default="tabular", help="attack whose weights are tuned (tabular)")
    p.add_argument("--split", default="test", help="the attacker's own data split (default test; clients use train)")
    p.add_argument("--trials", type=int, default=20, help="Optuna trials (default 20)")
    p.add_argument("--batches", type=int, default=2, help="simulated client batches per trial (default 2)")
    p.add_argument("--sampler", default="tpe", help="tpe (Tree-structured Parzen Estimator) or gp (Gaussian process)")
    p.add_argument("--startup", type=int, default=None,
                   help="random trials before the sampler's model proposes (default trials // 3, 2..10)")
    p.add_argument("--iterations", type=int, default=None, help="attack iterations per run (attack default if omitted)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="fixed attack option (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from .. import __version__
    from ..cli import _fmt, _key_values, _scenario
    from ..outdir import atomic_directory, write_json
    from ..report.plots import save_loss_plot
    from ..tuning import TuneConfig, tune

    options = _key_values(args.option, flag="--option")
    if args.iterations is not None:
        options["iterations"] = args.iterations
    config = TuneConfig(trials=args.trials, batches=args.batches, sampler=args.sampler, seed=args.seed,
                        startup=args.startup)
    scenario = dataclasses.replace(_scenario(args), split=args.split)
    with tqdm(total=config.trials, desc="tune", unit="trial", file=sys.stderr, disable=args.quiet, leave=False) as bar:
        result = tune(scenario, attack=args.attack, attack_options=options, config=config, progress=bar.update)
    with atomic_directory(args.out) as tmp:
        write_json(tmp / "weights.json", result)
        write_json(tmp / "config.json", {"command": "tune", "version": __version__, "attack": args.attack,
                                         "options": options, "tune_config": dataclasses.asdict(config),
                                         "scenario": scenario.to_json()})
        trace = [t["log10_fmse"] for t in result["trials"] if t["log10_fmse"] is not None]
        save_loss_plot({"trial": trace}, tmp / "tuning.png", title=f"{args.sampler}: log10 FMSE per trial",
                       log_y=False)
    weights = " ".join(f"{k}={_fmt(v)}" for k, v in result["weights"].items())
    print(f"best log10 fmse={_fmt(result['best_log10_fmse'])} {weights}  -> {args.out / 'weights.json'}")
