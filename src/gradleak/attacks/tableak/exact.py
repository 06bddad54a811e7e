"""Exact recovery where the architecture permits it: SPEAR on a first linear+ReLU layer.

The record attack asks :mod:`gradleak.attacks.spear` first. What comes back is usable only by
what the attacker can check itself: SPEAR's certificate per sample (the recovered record is a
rank-one piece of the observed first-layer gradient) and the gradient loss of the batch.
Models without a qualifying first layer (recurrent nets, narrow or non-ReLU first layers that
SPEAR refuses) simply yield nothing, with the reason as a note.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import GradleakError
from ...observation import Observation
from ..base import Reconstruction, create_attack


@dataclass(frozen=True)
class ExactOutcome:
    reconstruction: Reconstruction | None  # SPEAR's batch (uncertified slots are placeholders); None = not applicable
    note: str  # one line for the run's notes

    @property
    def certified(self) -> torch.Tensor:
        rec = self.reconstruction
        if rec is None or rec.certified is None:
            return torch.zeros(0, dtype=torch.bool)
        return rec.certified

    @property
    def complete(self) -> bool:
        """Every sample certified: the batch is recovered exactly."""
        cert = self.certified
        return bool(cert.numel()) and bool(cert.all())


def try_spear(observation: Observation, *, generator: torch.Generator, trials: int) -> ExactOutcome:
    """SPEAR's reconstruction with its certificate, or the reason it does not apply."""
    try:
        rec = create_attack("spear", trials=trials).run(observation, generator=generator)
    except GradleakError as exc:
        return ExactOutcome(None, f"spear not applicable: {exc}")
    cert = rec.certified if rec.certified is not None else torch.zeros(observation.num_samples, dtype=torch.bool)
    return ExactOutcome(rec, f"spear certified {int(cert.sum())} of {observation.num_samples} records "
                             f"({rec.seconds:.1f} s)")
