"""How much compute an audit spends: named budgets (``quick``, ``standard``, ``thorough``).

A budget fixes the default batch sizes, the number of seeds, each attack's iterations and
the size of the defense sweep. ``standard`` is the bare ``gradleak audit``: it is sized to
finish on the embedded histology data with the LeNet victim in about five minutes on two CPU
cores; ``quick`` is for smoke tests and CI, ``thorough`` for a report you would sign.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..registry import Registry


@dataclass(frozen=True)
class Budget:
    """Knobs of one audit budget (every field has the value the named budget uses)."""

    name: str
    batch_sizes: tuple[int, ...]  # client batch sizes probed (the first, smallest, is the worst case)
    seeds: int  # seeds per (attack, batch size): client batch, attack start; >= 2 gives mean +- std
    # optimisation attacks run up to this batch size; closed-form ones (rgap, spear) at every size:
    # they cost seconds where an iterative attack at batch 32 costs minutes and recovers nothing
    iterative_max_batch: int = 8
    iterations: dict[str, int] = field(default_factory=dict)  # attack name -> iterations (attack default if absent)
    restarts: int = 1  # restarts of the optimisation attacks (chosen by gradient loss, never by truth)
    extended: bool = False  # also run the slow extras: DLG (joint labels) and GIML (learns its prior during the attack)
    defenses: tuple[str, ...] = ("none", "noise:0.01", "prune:0.9", "dpsgd:1.0")  # defense sweep specs
    defense_rounds: int = 10  # FedAvg rounds of the defense sweep's utility run
    defense_victims: int = 2  # attacked client updates per defense
    defense_iterations: int = 200  # iterations of the defense sweep's attack (when it iterates)
    reference_steps: int = 200  # Adam steps of the attacker's reference classifier (defense sweep)
    # costliest attack (progress units per iteration, see battery.Plan.weight) the defense sweep may use:
    # 2 admits IG and CI-Net; an L-BFGS attack adapted to noise (more restarts) would take most of the budget
    defense_max_weight: float = 2.0


BUDGETS: Registry[Budget] = Registry("budget")


def _register(budget: Budget, description: str) -> None:
    BUDGETS.register(budget.name, description=description)(budget)


_register(Budget(
    name="quick", batch_sizes=(1, 4), seeds=1, iterative_max_batch=4,
    iterations={"idlg": 40, "dlg": 40, "ig": 200, "cinet": 100, "giz": 100, "gias": 100, "tabular": 300,
                "tableak": 200},
    defenses=("none", "noise:0.01", "prune:0.9"), defense_rounds=4, defense_victims=1, defense_iterations=100,
    reference_steps=100,
), "smoke test: two batch sizes, one seed, short attacks (about a minute)")
_register(Budget(
    name="standard", batch_sizes=(1, 2, 4, 8, 16, 32), seeds=2, iterative_max_batch=8,
    iterations={"idlg": 60, "dlg": 60, "ig": 400, "cinet": 200, "giz": 300, "gias": 300, "tableak": 500},
    defense_rounds=10, defense_victims=2, defense_iterations=200, reference_steps=200,
), "the default: batch sizes 1-32 (iterative attacks up to 8), two seeds, a four-point defense sweep (about five minutes on 2 cores)")
_register(Budget(
    name="thorough", batch_sizes=(1, 2, 4, 8, 16, 32, 64), seeds=3, restarts=2, extended=True, iterative_max_batch=16,
    iterations={"idlg": 300, "dlg": 300, "ig": 1200, "cinet": 300, "hgap": 1200},
    defenses=("none", "noise:0.001", "noise:0.01", "clip:1", "prune:0.5", "prune:0.9", "dpsgd:0.5", "dpsgd:1.0",
              "secagg:4", "steps:5"),
    defense_rounds=30, defense_victims=4, defense_iterations=600, reference_steps=400,
    defense_max_weight=float("inf"),
), "a report to sign: batch sizes 1-64 (iterative attacks up to 16), three seeds, full-length attacks, GIML, a ten-point defense sweep (an hour or more)")


def get_budget(name: str) -> Budget:
    """The named budget (unknown names list the valid ones)."""
    return BUDGETS.get(name)
