"""``gradleak inspect --model-file F``: check a received model before training on it.

``F`` is a safetensors state dict (see :mod:`gradleak.malicious.modelfile`), with its
architecture as JSON beside it (``F`` with suffix ``.json``), in its header, or given with
``--spec``. Anything else - a pickle above all - is refused with one line, never unpickled.
Exit status 0 when nothing was found, 1 when the model shows imprint-style structure (the
client should refuse to train on it), 2 for bad input. ``--out DIR`` also writes inspect.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="client-side check of a received model file (crafted imprint layers?)")
    p.add_argument("--model-file", required=True, type=Path, help="the model as a safetensors state dict")
    p.add_argument("--spec", type=Path, default=None, help="its architecture (JSON ModelSpec); default: F.json if present")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", type=Path, default=None, help="also write inspect.json here")
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from ..malicious import inspect_state, load_model_file

    state, spec = load_model_file(args.model_file, spec=args.spec)
    report = inspect_state(state, spec=spec)
    payload = {"model_file": str(args.model_file), "spec": None if spec is None else spec.to_json(), **report.to_json()}
    if args.out is not None:
        from ..outdir import atomic_directory, write_json

        with atomic_directory(args.out) as tmp:
            write_json(tmp / "inspect.json", payload)
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        print(f"{args.model_file}: {report.verdict}")
        for note in report.notes:
            print(f"  - {note}")
    return 1 if report.alarm else 0
