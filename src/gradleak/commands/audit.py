"""``gradleak audit``: the whole leakage audit of one federated setup, as one report.

Bare ``gradleak audit --out runs/audit`` audits the DLG LeNet on the embedded histology
patches (no download) with the ``standard`` budget in about five minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from ..audit.budget import BUDGETS

    p = sub.add_parser("audit", help="audit a federated setup: what leaks, how badly, which defense helps (report.html)",
                       description="Simulate client updates of your model and data, attack them with every "
                                   "applicable attack, sweep batch sizes and defenses, and write a self-contained "
                                   "report.html that leads with a plain verdict.")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py|MODULE",
                   help="your own Python file or module that registers models/datasets (repeatable; see docs/tutorial.md)")
    g = p.add_argument_group("the audited setup")
    g.add_argument("--dataset", default="histology", help="dataset name (default histology, embedded; see `gradleak datasets`)")
    g.add_argument("--model", default=None,
                   help="victim model (default lenet for images, mlp for health records; see `gradleak models`)")
    g.add_argument("--batch-sizes", type=int, nargs="+", default=None, metavar="B",
                   help="client batch sizes to probe (default: the budget's, e.g. 1 2 4 8)")
    g.add_argument("--protocol", default="fedsgd", help="fedsgd (one gradient, default) or fedavg (local steps)")
    g.add_argument("--local-epochs", type=int, default=1, help="fedavg: local epochs (default 1)")
    g.add_argument("--local-batch-size", type=int, default=None, help="fedavg: local mini-batch (default: whole batch)")
    g.add_argument("--local-lr", type=float, default=0.1, help="fedavg: local learning rate (default 0.1)")
    g.add_argument("--local-shuffle", action="store_true",
                   help="fedavg: clients shuffle their batch every local epoch (default: fixed order)")
    g.add_argument("--trained-steps", type=int, default=0, help="pre-train the global model first (default 0: round one)")
    g.add_argument("--train-mode", action="store_true", help="clients run BatchNorm in train mode")
    g.add_argument("--share-labels", action="store_true", help="clients also share their labels")
    g.add_argument("--share-buffers", action="store_true",
                   help="clients return their BatchNorm buffers with the update (their whole state_dict)")
    g.add_argument("--image-size", type=int, default=None, help="image size in pixels (dataset default)")
    g.add_argument("--grayscale", action="store_true", help="convert images to one channel")
    g.add_argument("--data-root", default=None, help="directory with dataset files (MedMNIST .npz)")
    g.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE", help="model option (repeatable)")
    a = p.add_argument_group("the audit")
    a.add_argument("--budget", default="standard", choices=BUDGETS.names(),
                   help="quick (~1 min), standard (default, ~5 min on 2 cores), thorough (an hour or more)")
    a.add_argument("--seeds", type=int, default=None, help="seeds per setting (default: the budget's)")
    a.add_argument("--attacks", nargs="+", default=None, metavar="NAME", help="only these attacks (default: all that apply)")
    a.add_argument("--defenses", nargs="+", default=None, metavar="SPEC",
                   help="defense specs to sweep (default: the budget's; 'none', the reference row, is added); 'none' alone skips the sweep")
    a.add_argument("--prior", type=Path, default=None, help="generator prior directory: adds giz/gias (`gradleak prior train`)")
    a.add_argument("--threat", default="malicious", choices=["honest", "malicious"],
                   help="malicious (default): also measure a server that crafts the model it sends (imprint block, "
                        "with and without secure aggregation; seconds); honest: skip that section")
    a.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    a.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 for models under 1M parameters, else torch's default)")
    a.add_argument("--workers", type=int, default=None,
                   help="processes for the attack battery's independent runs, one thread each (default: every "
                        "available core for models that run on one thread, else 1); the same results as 1")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.add_argument("--out", required=True, type=Path, help="output directory (report.html, results.json, pictures)")
    p.set_defaults(func=cmd_audit)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def load_plugin(target: str) -> None:
    """Import the user's own registrations (a .py file or an importable module): their code, run on request."""
    import importlib
    import importlib.util

    from ..errors import GradleakError

    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise GradleakError(f"--plugin {target}: no such file")
            name = f"gradleak_plugin_{path.stem}"
            loaded = sys.modules.get(name)
            if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == path.resolve():
                return  # already registered in this process (registries refuse duplicates)
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:  # a half-run plugin must not count as loaded
                sys.modules.pop(spec.name, None)
                raise
        else:
            importlib.import_module(target)
        from ..audit.parallel import PLUGINS

        if target not in PLUGINS:
            PLUGINS.append(target)  # worker processes load it too
    except GradleakError:
        raise
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:  # sys.exit() in a plugin must not end gradleak silently (with its status)
        raise GradleakError(f"--plugin {target} failed: it called sys.exit({exc.code!r}) while being imported") from None
    except BaseException as exc:  # the user's code: any failure becomes one line naming it
        raise GradleakError(f"--plugin {target} failed: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None


def cmd_audit(args: argparse.Namespace) -> None:
    from ..audit import AuditSettings, run_audit
    from ..cli import _check_device, _key_values
    from ..fl.protocol import Protocol

    for target in args.plugin:
        load_plugin(target)

    defenses = args.defenses
    if defenses is not None and defenses == ["none"]:
        defenses = []  # 'none' alone: no sweep (a sweep needs something to compare with)
    settings = AuditSettings(
        dataset=args.dataset, model=args.model, budget=args.budget,
        batch_sizes=tuple(args.batch_sizes) if args.batch_sizes else None, seeds=args.seeds,
        protocol=Protocol(name=args.protocol, lr=args.local_lr, local_epochs=args.local_epochs,
                          local_batch_size=args.local_batch_size, shuffle=args.local_shuffle),
        trained_steps=args.trained_steps, train_mode=args.train_mode, share_labels=args.share_labels,
        share_buffers=args.share_buffers, image_size=args.image_size, grayscale=args.grayscale, data_root=args.data_root,
        model_options=_key_values(args.model_option, flag="--model-option"), attacks=args.attacks,
        defenses=defenses, prior=None if args.prior is None else str(args.prior), seed=args.seed, threat=args.threat,
        device=_check_device(args.device), threads=args.threads, workers=args.workers,
    )
    signal.signal(signal.SIGTERM, _interrupt)  # a killed audit still removes its temporary directory
    result = run_audit(settings, out=args.out, show_progress=not args.quiet, command=sys.argv[1:])
    v = result["verdict"]
    print(f"{v['title']}: {v['headline']}")
    for action in v["actions"][:2]:
        print(f"  - {action}")
    print(f"report: {args.out / 'report.html'}")
