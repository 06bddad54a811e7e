"""SPEAR-style exact batch disaggregation (an attack family of several modules)."""

from . import attack  # noqa: F401  (registers "spear")
