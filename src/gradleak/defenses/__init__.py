"""Defenses against gradient inversion and their privacy-utility evaluation.

``parse_defense("noise:0.01") -> Defense``; :data:`DEFENSES` lists the mechanisms;
:func:`evaluate_defenses` is what ``gradleak defend`` runs (also used by ``gradleak audit``);
:func:`apply_defense` applies an update-only defense to an existing observation (sweeps).
"""

from . import aggregation, bido, dpsgd, perturbation, update  # noqa: F401  (register the defenses)
from .base import DEFENSES, Defense, apply_defense, parse_defense, register_defense

__all__ = ["DEFENSES", "Defense", "apply_defense", "evaluate_defenses", "parse_defense", "register_defense"]


def evaluate_defenses(*args, **kwargs):  # late import: evaluation pulls in attacks and metrics
    """See :func:`gradleak.defenses.evaluation.evaluate_defenses`."""
    from .evaluation import evaluate_defenses as run

    return run(*args, **kwargs)
