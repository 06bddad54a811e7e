"""Attack registry: ``create_attack(name, **config).run(observation) -> Reconstruction``."""

from . import cinet, dlg, fedavg, gias, giml, inverting, latent_decoder, rgap, rgap_hgap, spear, tableak, tabular  # noqa: F401  (register the attacks)
from . import imprint  # noqa: F401  (malicious-server attack)
from .base import ATTACKS, Attack, Reconstruction, create_attack, register_attack
from .labels import LabelEstimate, recover_labels
from .objective import DISTANCES, GradientMatcher

__all__ = [
    "ATTACKS", "Attack", "DISTANCES", "GradientMatcher", "LabelEstimate", "Reconstruction",
    "create_attack", "recover_labels", "register_attack",
]
