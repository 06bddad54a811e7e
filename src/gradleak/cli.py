"""``gradleak`` command line: a thin layer over :mod:`gradleak.scenario` and :mod:`gradleak.runner`.

Every problem with the user's input becomes one line on stderr and exit status 2, with no
traceback and no half-written ``--out`` directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import pkgutil
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn, Sequence

from . import __version__
from .errors import GradleakError


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors on a single line (exit status 2), with a "did you mean"."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}{_suggestion(self, message)}\n")


def _suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    """A close match for argparse's "invalid choice: 'x'" or "unrecognized arguments: --x"."""
    import re

    from .validation import did_you_mean

    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        return did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
    unknown = re.search(r"unrecognized arguments: (--[^\s=]+)", message)
    if unknown:
        return did_you_mean(unknown.group(1), sorted(_option_strings(parser)))
    return ""


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every long option of ``parser`` and of its sub-commands (argparse reports extras at the top)."""
    found = {o for o in parser._option_string_actions if o.startswith("--")}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _option_strings(sub)
    return found


# Every module under gradleak/commands/ adds a sub-command: each defines ``register(sub)``, which
# adds its parser(s) with ``set_defaults(func=...)``; the function raises GradleakError for bad
# input. They are discovered, not listed, so a new command touches no shared file. Shared helpers
# (_scenario_arguments, _simulate, _key_values, ...) are importable from here.
def command_modules() -> list[str]:
    """Names of the sub-command modules in :mod:`gradleak.commands`, sorted."""
    from . import commands

    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))


# ---------------------------------------------------------------------------- arguments
def _scenario_arguments(p: argparse.ArgumentParser, *, required: bool) -> None:
    g = p.add_argument_group("scenario (what the client trains on and shares)")
    g.add_argument("--dataset", required=required, help="dataset name, e.g. histology, faces, digits, medmnist:breastmnist")
    g.add_argument("--model", required=required, help="victim model name, e.g. lenet, convnet, cnn6")
    g.add_argument("--batch-size", type=int, default=1, help="samples in the client's batch (default 1)")
    g.add_argument("--protocol", default="fedsgd", help="fedsgd (one gradient) or fedavg (local steps)")
    g.add_argument("--local-epochs", type=int, default=1, help="fedavg: local epochs (default 1)")
    g.add_argument("--local-batch-size", type=int, default=None, help="fedavg: local mini-batch size (default: whole batch)")
    g.add_argument("--local-lr", type=float, default=0.1, help="fedavg: local learning rate (default 0.1)")
    g.add_argument("--local-shuffle", action="store_true",
                   help="fedavg: the client shuffles its batch every local epoch with a private seed (default: fixed order)")
    g.add_argument("--trained-steps", type=int, default=0, help="pre-train the global model for this many steps (default 0)")
    g.add_argument("--train-mode", action="store_true",
                   help="client runs the model in train mode (BatchNorm batch statistics); default eval mode")
    g.add_argument("--share-labels", action="store_true", help="the client also shares its labels")
    g.add_argument("--share-buffers", action="store_true",
                   help="the client returns its BatchNorm buffers after local training (train mode: they reveal "
                        "batch statistics)")
    g.add_argument("--image-size", type=int, default=None, help="image size in pixels (dataset default if omitted)")
    g.add_argument("--grayscale", action="store_true", help="convert images to one channel")
    g.add_argument("--data-root", default=None, help="directory with dataset files (e.g. MedMNIST .npz)")
    g.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE", help="model constructor option (repeatable)")
    g.add_argument("--defense", default=None, metavar="SPEC",
                   help="defense the client applies before sharing, e.g. noise:0.01, prune:0.9, dpsgd:1.0 (see gradleak defend)")


def _parse_value(text: str) -> Any:
    """JSON values (numbers, true/false, lists) as such; anything else as a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _key_values(items: Sequence[str], *, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GradleakError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.replace("-", "_")] = _parse_value(value)
    return out


def _scenario(args: argparse.Namespace):
    from .fl.protocol import Protocol
    from .scenario import Scenario

    if args.trained_steps < 0:
        raise GradleakError(f"--trained-steps must be >= 0, got {args.trained_steps}")
    protocol = Protocol(
        name=args.protocol, lr=args.local_lr, local_epochs=args.local_epochs, local_batch_size=args.local_batch_size,
        shuffle=args.local_shuffle,
    )
    return Scenario(
        dataset=args.dataset, model=args.model, batch_size=args.batch_size, protocol=protocol,
        trained_steps=args.trained_steps, train_mode=args.train_mode, share_labels=args.share_labels,
        share_buffers=args.share_buffers, seed=args.seed, image_size=args.image_size, grayscale=args.grayscale, data_root=args.data_root,
        model_options=_key_values(args.model_option, flag="--model-option"),
        defense=getattr(args, "defense", None),
    )


def _simulate(args: argparse.Namespace, *, exclude: Any = None, craft: Any = None):
    """Simulate the scenario, with a progress bar while the global model is pre-trained.

    ``exclude``: dataset indices the client never holds (the attacker's own split);
    ``craft``: a malicious server's crafting of the model it sends (see scenario.simulate).
    """
    from tqdm import tqdm

    from .scenario import simulate

    scenario = _scenario(args)
    with tqdm(total=scenario.trained_steps, desc="pre-training", unit="step", file=sys.stderr,
              disable=args.quiet or scenario.trained_steps == 0, leave=False) as bar:
        observation, truth = simulate(scenario, progress=bar.update, exclude=exclude, craft=craft)
    return scenario, observation, truth


def _check_device(device: str) -> str:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise GradleakError("--device cuda requested but no CUDA device is available; use --device cpu")
    return device


# ---------------------------------------------------------------------------- commands
def cmd_datasets(args: argparse.Namespace) -> None:
    from .data import list_datasets

    rows = [(d["name"], "x".join(str(s) for s in d["shape"]), str(d["classes"]), d["source"]) for d in list_datasets()]
    _print_table(("name", "shape", "classes", "source"), rows)


def cmd_models(args: argparse.Namespace) -> None:
    from .models import list_models

    rows = [(m["name"], m["description"], ", ".join(f"{k}={v}" for k, v in m["options"].items())) for m in list_models()]
    _print_table(("name", "description", "options"), rows)


def cmd_attacks(args: argparse.Namespace) -> None:
    from .attacks import ATTACKS

    rows = []
    for name in ATTACKS.names():
        cfg = ATTACKS.get(name).Config()
        rows.append((name, ATTACKS.describe(name), ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg).items())))
    _print_table(("name", "description", "options"), rows)


def cmd_observe(args: argparse.Namespace) -> None:
    from .outdir import atomic_directory, write_json

    scenario, observation, truth = _simulate(args)
    with atomic_directory(args.out) as tmp:
        observation.save(tmp)
        if not args.no_ground_truth:
            truth.save(tmp / "ground_truth")
        write_json(tmp / "config.json", {"command": "observe", "version": __version__, "scenario": scenario.to_json()})
    print(f"observation written to {args.out}", file=sys.stderr)


def cmd_attack(args: argparse.Namespace) -> None:
    from .observation import GroundTruth, Observation
    from .outdir import atomic_directory
    from .attacks import ATTACKS, create_attack
    from .runner import evaluate, run_attack, write_attack_outputs

    device = _check_device(args.device)
    options = _key_values(args.option, flag="--option")
    for flag in ("iterations", "restarts"):
        if getattr(args, flag) is not None:
            options[flag] = getattr(args, flag)
    if args.prior is not None:
        from .priors import read_prior_info

        if "prior" not in {f.name for f in dataclasses.fields(ATTACKS.get(args.attack).Config)}:
            raise GradleakError(f"--prior applies to the generative-prior attacks (giz, gias), not {args.attack!r}")
        read_prior_info(args.prior)  # a missing or corrupt prior fails before any long work
        options["prior"] = str(args.prior)
    attack = create_attack(args.attack, **options)  # bad names/options fail before any long work
    config: dict[str, Any] = {"command": "attack", "version": __version__, "attack": args.attack,
                              "options": options, "seed": args.seed, "device": device}
    if args.observation:
        if args.dataset or args.model:
            raise GradleakError("give either --observation or --dataset/--model, not both")
        observation = Observation.load(args.observation)
        truth = GroundTruth.load(args.ground_truth) if args.ground_truth else None
        if truth is not None:
            truth.check_against(observation)
        config["observation"] = str(args.observation)
    else:
        if not args.dataset or not args.model:
            raise GradleakError("give --dataset and --model (or --observation DIR)")
        if args.ground_truth:
            raise GradleakError("--ground-truth only applies with --observation")
        exclude, craft = None, None
        if args.attacker_split or getattr(attack, "uses_attacker_data", False):
            from .priors import attacker_data

            split = attacker_data(args.dataset, data_root=args.data_root, image_size=args.image_size,
                                  grayscale=args.grayscale)
            exclude, config["client_pool"] = split.client_exclusion, f"disjoint from the attacker's split: {split.rule}"
            if hasattr(attack, "crafter"):  # a malicious server crafts the model from its own split
                craft = attack.crafter(split.data.inputs)
        scenario, observation, truth = _simulate(args, exclude=exclude, craft=craft)
        config["scenario"] = scenario.to_json()
    from .attacks.base import for_victim

    suited = for_victim(args.attack, options, observation)  # e.g. the record attack's sequence mode on a GRU
    if suited != options:
        options, attack = suited, create_attack(args.attack, **suited)
    attack, plan = _adapted(attack, options, observation=observation, adaptive=not args.non_adaptive)
    config["options"] = plan.options
    reconstruction = run_attack(observation, attack=attack, seed=args.seed, device=device, show_progress=not args.quiet)
    metrics = evaluate(reconstruction, truth, observation=observation)
    metrics.update(plan.record())
    with atomic_directory(args.out) as tmp:
        write_attack_outputs(tmp, config=config, metrics=metrics, reconstruction=reconstruction, truth=truth,
                                 observation=observation)
    keys = ("fmse", "similarity", "feature_accuracy") if "fmse" in metrics else ("psnr", "ssim", "mse")
    extra = ("exact_fraction", "certified_fraction") if metrics.get("certified_fraction") is not None else ()
    if "feature_certified_fraction" in metrics:  # deep spear: the features leaked, whatever the images
        extra = (*extra, "feature_exact_fraction", "feature_certified_fraction")
    shown = {k: metrics.get(k) for k in (*keys, "label_accuracy", *extra, "seconds")}
    budget = reconstruction.iterations * int(getattr(attack.config, "restarts", 1))
    used = f" iterations={reconstruction.iterations_used}/{budget}" if budget > 1 else ""
    print(" ".join(f"{k}={_fmt(v)}" for k, v in shown.items()) + used + f"  -> {args.out}")


# ---------------------------------------------------------------------------- helpers
def _adapted(attack: Any, options: dict[str, Any], *, observation: Any, adaptive: bool):
    """(attack, plan): against a defended observation the attack adapts unless ``adaptive`` is off."""
    from .attacks import create_attack
    from .defenses.adaptive import observed_defense, plan_attack

    plan = plan_attack(attack.name, options=options, defense=observed_defense(observation.defense), adaptive=adaptive,
                       base_knowledge=getattr(attack, "attacker_knowledge", None))
    return (create_attack(attack.name, **plan.options) if plan.overrides else attack), plan


def _fmt(v: Any) -> str:
    return "null" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def _note(message: Warning | str, *_args: Any, **_kwargs: Any) -> None:
    print(f"gradleak: note: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gradleak", description="Measure how much private data leaks from federated-learning updates.")
    parser.add_argument("--version", action="version", version=f"gradleak {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("datasets", help="list datasets").set_defaults(func=cmd_datasets)
    sub.add_parser("models", help="list victim models").set_defaults(func=cmd_models)
    sub.add_parser("attacks", help="list attacks and their options").set_defaults(func=cmd_attacks)

    p = sub.add_parser("observe", help="simulate a client round and save what the server sees")
    _scenario_arguments(p, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-ground-truth", action="store_true", help="do not save the client's batch beside it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_observe)

    p = sub.add_parser("attack", help="attack a simulated or saved observation")
    _scenario_arguments(p, required=False)
    p.add_argument("--observation", type=Path, help="attack a saved observation directory instead of simulating")
    p.add_argument("--ground-truth", type=Path, help="with --observation: ground-truth directory for metrics")
    p.add_argument("--attack", required=True, help="attack name (see `gradleak attacks`)")
    p.add_argument("--iterations", type=int, default=None, help="optimisation iterations (attack default if omitted)")
    p.add_argument("--restarts", type=int, default=None, help="random restarts (attack default if omitted)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="attack config option (repeatable)")
    p.add_argument("--prior", type=Path, default=None, help="generator prior directory for giz/gias (`gradleak prior train`)")
    p.add_argument("--attacker-split", action="store_true",
                   help="draw the client's batch outside the attacker's own data split (automatic for giz/gias/giml)")
    p.add_argument("--non-adaptive", action="store_true",
                   help="against a defended update, the attacker ignores the defense (default: it adapts; "
                        "metrics.json records which in attacker_knowledge)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_attack)

    for name in command_modules():  # larger commands live in their own modules
        importlib.import_module(f"gradleak.commands.{name}").register(sub)
    return parser


MAX_COUNT = 2**31 - 1  # integer flags above this are typos (torch counts and sizes are int32/int64)
MAX_SEED = 2**63 - 1  # torch.manual_seed's range


def _preflight(args: argparse.Namespace) -> None:
    """Checks every command gets before its work: integer flags in range, the seed, and ``--out``
    (see outdir.claim_out; a command that adds to an existing directory, a resumable sweep, sets
    ``out_replaced=False`` in its parser defaults)."""
    for name, value in vars(args).items():
        if isinstance(value, int) and not isinstance(value, bool):
            low, high = (0, MAX_SEED) if name == "seed" else (-MAX_COUNT, MAX_COUNT)
            if not low <= value <= high:
                raise GradleakError(f"--{name.replace('_', '-')} {value} is out of range ({low} to {high})")
    if getattr(args, "out", None) is None:
        return
    from .outdir import claim_out

    inputs = [v for k, v in vars(args).items() if k != "out" and isinstance(v, Path)]
    claim_out(args.out, inputs=inputs, replaces=getattr(args, "out_replaced", True))


def _release_out() -> None:
    from .outdir import release_claims

    release_claims()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _preflight(args)
        with warnings.catch_warnings():  # library warnings become one plain line each
            warnings.showwarning = _note
            code = args.func(args)  # a command may return a non-zero status (e.g. inspect: 1 = alarm)
    except GradleakError as exc:
        print(f"gradleak: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gradleak: interrupted", file=sys.stderr)
        return 130
    finally:
        _release_out()
    return int(code or 0)


if __name__ == "__main__":
    raise SystemExit(main())
