"""``gradleak defenses``: the defense specs ``--defense`` / ``--defenses`` and grids accept.

Listed from the defense registry, so a new defense appears here without touching this file.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("defenses", help="list defense specs (for --defense, gradleak defend and sweep grids)")
    p.set_defaults(func=cmd_defenses)


def defense_rows() -> list[tuple[str, str, str, str, str]]:
    """(name, example spec, value, where it acts, description) per registered defense."""
    from ..defenses import DEFENSES
    from ..defenses.base import example_spec

    rows = []
    for name in DEFENSES.names():
        cls = DEFENSES.get(name)
        if not cls.takes_value:
            value = "-"
        elif cls.default_value is None:
            value = "required"
        else:
            value = f"optional (default {cls.default_value:g})"
        acts = "update" if cls.post_hoc else "client"
        rows.append((name, example_spec(cls), value, acts, DEFENSES.describe(name)))
    return rows


def cmd_defenses(args: argparse.Namespace) -> None:
    from ..cli import _print_table

    _print_table(("name", "example", "value", "acts on", "description"), defense_rows())
    print("\nspec: NAME or NAME:VALUE. 'update': transforms the finished update (also applies to a saved "
          "observation); 'client': changes how the client computes it. See docs/defenses.md.")
