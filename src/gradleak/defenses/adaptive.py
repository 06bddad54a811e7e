"""The attacker a defended update is attacked with: adaptive by default, everywhere.

One rule for ``attack --defense``, ``attack --observation`` (a defended saved observation),
sweeps and ``defend``: the user's attack options, then the defense's adaptive overrides
(:meth:`Defense.adaptive`) on top, unless the run asks for the non-adaptive attacker. A
defense evaluated only against an attacker who ignores it looks stronger than it is, so the
adaptive attacker is the default and the record says which one ran (``attacker_knowledge``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .base import Defense, parse_defense


@dataclass(frozen=True)
class AttackerPlan:
    """The options an attack runs with against a defense, and what that attacker knows."""

    options: dict[str, Any]  # the attack's final options (user's, then adaptive overrides)
    adaptive: bool  # whether the attacker adapted to the defense
    overrides: dict[str, Any] = field(default_factory=dict)  # what adapting changed (empty: nothing to change)
    knowledge: str = ""  # one line for metrics.json / tables
    defense: str | None = None  # the defense spec, None when undefended

    def record(self) -> dict[str, Any]:
        """Flat metrics.json keys (``attacker_knowledge``, ``adaptive``, ``adaptive_options``, ``defense``)."""
        return {"attacker_knowledge": self.knowledge, "adaptive": self.adaptive,
                "adaptive_options": dict(self.overrides), "defense": self.defense}


def attack_fields(attack: str) -> set[str]:
    """Option names of attack ``attack`` (its Config dataclass)."""
    from ..attacks import ATTACKS

    return {f.name for f in dataclasses.fields(ATTACKS.get(attack).Config)}


def plan_attack(
    attack: str, *, options: dict[str, Any], defense: Defense | str | None, adaptive: bool = True,
    base_knowledge: str | None = None,
) -> AttackerPlan:
    """Options and knowledge of ``attack`` against ``defense`` (a Defense, a spec, or None).

    ``base_knowledge``: what the attack itself assumes (its class's ``attacker_knowledge``);
    the defense part is appended to it.
    """
    from ..attacks import ATTACKS

    base = base_knowledge or getattr(ATTACKS.get(attack), "attacker_knowledge", "architecture, weights and protocol")
    if isinstance(defense, str):
        defense = parse_defense(defense)
    if defense is None or defense.name == "none":
        return AttackerPlan(options=dict(options), adaptive=False, knowledge=base)
    if not adaptive:
        return AttackerPlan(options=dict(options), adaptive=False, defense=defense.spec,
                            knowledge=f"{base}; non-adaptive: ignores the defense {defense.spec}")
    fields = attack_fields(attack)
    mine = {k: v for k, v in options.items() if k in fields}
    overrides = defense.adaptive(mine, attack_fields=fields)
    changed = ", ".join(f"{k}={v}" for k, v in overrides.items()) or f"no option of {attack} changes"
    return AttackerPlan(options={**options, **overrides}, adaptive=True, overrides=overrides, defense=defense.spec,
                        knowledge=f"{base}; adaptive to {defense.spec} ({changed}): {defense.knowledge}")


def observed_defense(described: dict[str, Any] | None) -> Defense | None:
    """The defense recorded in a saved observation (``Observation.defense``), None when absent."""
    if not described or not described.get("spec"):
        return None
    return parse_defense(str(described["spec"]))
