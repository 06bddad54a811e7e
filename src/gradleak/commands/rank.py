"""``gradleak rank``: R-GAP's rank analysis of a victim architecture (no data, no attack run),
and up to which batch size a linear+ReLU layer lets SPEAR split a batch exactly.

Prints the per-layer table (unknowns, gradient / weight / virtual constraints, RA-i, the
paper's raw count and the numerical rank of each layer's system for a random input) and the
verdict; ``--json`` prints :meth:`RankReport.to_json` instead. With ``--out DIR`` it also
writes ``rank.json``, ``config.json`` and ``rank.png`` there (atomically).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

MAX_INPUT_ENTRIES = 2**22  # per-sample input entries --input-shape may ask for (3 x 1024 x 1024 is 3.1M)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rank", help="rank analysis (R-GAP): can this architecture's gradient reveal its input?")
    p.add_argument("--model", required=True, help="victim model name (see `gradleak models`), e.g. cnn6, cnn6d, fcn3")
    p.add_argument("--input-shape", required=True, metavar="C,H,W", help="per-sample input shape, e.g. 3,32,32")
    p.add_argument("--classes", type=int, default=1,
                   help="output classes (default 1: the paper's single-logit logistic setting)")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE", help="model constructor option")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and the random input")
    p.add_argument("--no-numerical", action="store_true", help="counts only (skip the numerical rank of each layer)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", type=Path, default=None, help="also write rank.json, config.json and rank.png here")
    p.set_defaults(func=cmd_rank)


def parse_shape(text: str) -> tuple[int, ...]:
    from ..errors import GradleakError

    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape):
        raise GradleakError(f"--input-shape expects positive sizes like 3,32,32; got {text!r}")
    if math.prod(shape) > MAX_INPUT_ENTRIES:  # the analysis builds the model and a random input of this size
        raise GradleakError(f"--input-shape {text} has {math.prod(shape):,} entries per sample; at most "
                            f"{MAX_INPUT_ENTRIES:,} are analysed (e.g. 3,512,512)")
    return shape


def cmd_rank(args: argparse.Namespace) -> None:
    import json

    import torch

    from .. import __version__
    from ..analysis.rank import rank_analysis
    from ..cli import _key_values, _print_table
    from ..errors import GradleakError
    from ..models import build_model

    shape = parse_shape(args.input_shape)
    if args.classes < 1:
        raise GradleakError(f"--classes must be >= 1, got {args.classes}")
    options = _key_values(args.model_option, flag="--model-option")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = build_model(args.model, input_shape=shape, num_classes=args.classes, **options)
    from ..analysis.disaggregation import disaggregation_analysis

    split = disaggregation_analysis(model, input_shape=shape)
    try:
        report = rank_analysis(model.eval(), input_shape=shape, numerical=not args.no_numerical, seed=args.seed)
    except GradleakError as exc:  # R-GAP needs invertible activations; a ReLU MLP still has a SPEAR verdict
        if split is None:
            raise
        report, rgap_error = None, str(exc)
    payload = {"model": args.model, "classes": args.classes, **(report.to_json() if report else {"rgap": rgap_error}),
               "disaggregation": None if split is None else split.to_json()}
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        if report is not None:
            rows = [(r.name, r.kind, r.unknowns, r.gradient_constraints, r.weight_constraints, r.virtual_constraints,
                     f"{r.ra_index:+d}", f"{r.closed_form_index:+d}", r.weights, r.outputs, f"{r.paper_index:+d}",
                     "-" if r.numerical_rank is None else r.numerical_rank) for r in report.layers]
            _print_table(("layer", "kind", "|x|", "grad", "weight", "virtual", "RA-i", "closed", "|W|", "|z|",
                          "paper RA-i", "rank"), rows)
            print(f"{args.model} {args.input_shape}: {report.verdict}")
        else:
            print(f"{args.model} {args.input_shape}: R-GAP analysis not applicable ({rgap_error})")
        print(f"batches (spear): {'no linear layer followed by a ReLU' if split is None else split.verdict()}")
        for note in report.notes if report is not None else []:
            print(f"note: {note}")
    if args.out is not None:
        from ..outdir import atomic_directory, write_json
        from ..analysis.rank_chart import save_rank_chart

        with atomic_directory(args.out) as tmp:
            write_json(tmp / "rank.json", payload)
            write_json(tmp / "config.json", {"command": "rank", "version": __version__, "model": args.model,
                                             "input_shape": list(shape), "classes": args.classes,
                                             "model_options": options, "seed": args.seed})
            if report is not None:
                save_rank_chart(report, tmp / "rank.png", title=f"{args.model} {args.input_shape}")
