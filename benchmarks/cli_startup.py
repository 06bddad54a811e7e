"""CLI start-up cost relative to a bare ``import torch`` (issue #18, item 1).

Each command runs in a fresh interpreter, interleaved with the ``import torch`` baseline so that
load on a shared machine hits both alike; the figure reported is the ratio of medians. Targets:
``gradleak --help`` <= 0.3x (it must not import torch at all) and ``gradleak attacks`` <= 1.1x
(it lists the attacks' config defaults, which live in torch-importing modules, but must not pay
for scipy, the priors' metrics or the audit).

    python benchmarks/cli_startup.py              # 7 rounds
    python benchmarks/cli_startup.py --rounds 3

Results: benchmarks/results/cli_startup.{json,md}. Also records, per command, whether torch was
imported at all (``python -X importtime``), which is load-independent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "results"
BASELINE = ("import torch",)
COMMANDS: tuple[tuple[str, ...], ...] = (
    ("--help",), ("attacks",), ("datasets",), ("models",), ("defenses",),
    ("attack", "--help"), ("audit", "--help"), ("observe", "--help"), ("rank", "--help"),
    ("sweep", "--help"), ("defend", "--help"), ("inspect", "--help"), ("prior", "--help"), ("tune", "--help"),
)
TARGETS = {("--help",): 0.3, ("attacks",): 1.1}


def _cli_code(args: tuple[str, ...]) -> str:
    return f"import sys; sys.argv=['gradleak', *{list(args)!r}]; from gradleak.cli import main; sys.exit(main())"


# As installed: bytecode caches written and used. With PYTHONDONTWRITEBYTECODE set (as on the
# development machine) every run recompiles gradleak's ~150 modules, ~0.3 s users never pay.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                   env=ENV)
    return time.perf_counter() - start


def _imports_torch(code: str) -> bool:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=False,
                          env=ENV)
    return any(line.split("|")[-1].strip() == "torch" for line in done.stderr.splitlines() if "|" in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    from gradleak.cli import command_modules, build_parser  # noqa: F401  (fail early if not installed)

    for cmd in COMMANDS:  # warm-up: write the bytecode caches an installed package has
        _seconds(_cli_code(cmd))
    base: list[float] = []
    times: dict[tuple[str, ...], list[float]] = {c: [] for c in COMMANDS}
    for r in range(args.rounds):
        for cmd in COMMANDS:  # baseline beside every command: the ratio sees the same load
            base.append(_seconds(BASELINE[0]))
            times[cmd].append(_seconds(_cli_code(cmd)))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    torch_s = statistics.median(base)
    rows = []
    for cmd in COMMANDS:
        med = statistics.median(times[cmd])
        rows.append({"command": "gradleak " + " ".join(cmd), "median_s": round(med, 3),
                     "ratio_to_import_torch": round(med / torch_s, 3), "imports_torch": _imports_torch(_cli_code(cmd)),
                     "target": TARGETS.get(cmd), "meets_target": None if cmd not in TARGETS else med / torch_s <= TARGETS[cmd]})
    result = {"import_torch_median_s": round(torch_s, 3), "rounds": args.rounds, "python": sys.version.split()[0],
              "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cli_startup.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# CLI start-up, relative to `python -c \"import torch\"`", "",
             f"Median of {args.rounds} interleaved rounds; `import torch` median {torch_s:.2f} s on this machine.", "",
             "| command | median s | x import torch | imports torch | target |", "|---|---:|---:|---|---|"]
    for row in rows:
        target = "" if row["target"] is None else f"<= {row['target']}x: {'met' if row['meets_target'] else 'MISSED'}"
        lines.append(f"| `{row['command']}` | {row['median_s']:.2f} | {row['ratio_to_import_torch']:.2f} | "
                     f"{'yes' if row['imports_torch'] else 'no'} | {target} |")
    (OUT / "cli_startup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
