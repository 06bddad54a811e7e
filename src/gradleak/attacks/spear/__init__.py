"""SPEAR-style exact batch disaggregation (an attack family of several modules)."""

from . import attack  # noqa: F401  (registers "spear")
from . import deep  # noqa: F401  (registers "spear-ig": deeper layers, features then images)
