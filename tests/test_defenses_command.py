"""``gradleak defenses`` lists every registered defense spec with a working example."""

from __future__ import annotations

from gradleak.cli import main
from gradleak.commands.defenses import defense_rows
from gradleak.defenses import DEFENSES, parse_defense


def test_lists_every_defense_with_a_parseable_example(capsys):
    assert main(["defenses"]) == 0
    out = capsys.readouterr().out
    rows = defense_rows()
    assert [r[0] for r in rows] == DEFENSES.names()
    for name, example, *_ in rows:
        assert name in out and example in out
        assert parse_defense(example).name == name  # every example is a valid spec
