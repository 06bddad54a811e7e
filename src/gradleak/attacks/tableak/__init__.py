"""TabLeak-style record inversion (an attack family of several modules): registers ``tableak``."""

from . import attack  # noqa: F401  (registers "tableak")
