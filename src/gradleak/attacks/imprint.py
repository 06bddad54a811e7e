"""``imprint``: a malicious server reads samples verbatim out of a crafted model's update.

Robbing the Fed (Fowl et al., ICLR 2022). The server sends the victim model behind an imprint
block it crafted from its own public data (:mod:`gradleak.malicious.craft`); the client trains
on it as usual; the attack reads every bin out of the update in closed form and checks each
one it can (:mod:`.imprint_readout`). It does not care how many updates were summed, so secure
aggregation does not stop it: a bin is read out of the k clients' sum like out of one update.

The reconstruction has one slot per sample the update covers: first the bins the attacker
certified as single samples, then the other non-empty bins (mixtures, reported as collisions:
not recoveries), then mid-range filler if fewer bins were non-empty than samples (collisions
and samples below the lowest threshold). ``Reconstruction.certified`` marks the first group.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..errors import GradleakError
from ..models.imprint import ImprintModel
from ..observation import Observation
from .base import Attack, Progress, Reconstruction, register_attack
from .imprint_readout import check_bins, read_bins, value_range


@dataclass
class ImprintConfig:
    bins: int = 1024  # rows of the imprint block the server crafts (used when the attack crafts the model)
    statistic: str = "random"  # statistic the rows measure (gradleak.malicious.craft.STATISTICS)
    range_tol: float = 0.01  # check 1: a read-out may leave the data range by this share of it (rounding)
    count_tol: float = 0.01  # check 3: |estimated samples in the bin - 1| allowed for a single sample (one gradient)
    count_tol_steps: float = 0.25  # check 3 when clients take several local steps (the model moves between them)
    empty_tol: float = 1e-7  # a bin is empty if its bias difference is below this x the largest bias update

    def __post_init__(self) -> None:
        if self.bins < 2:
            raise GradleakError(f"imprint needs bins >= 2, got {self.bins}")
        for name in ("range_tol", "count_tol", "count_tol_steps", "empty_tol"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise GradleakError(f"imprint: {name} must be a positive number, got {value}")


@register_attack("imprint", description="malicious server: crafted imprint block, samples read out in closed form "
                                        "(Robbing the Fed, Fowl et al. 2022)")
class Imprint(Attack):
    Config = ImprintConfig
    threat_model: ClassVar[str] = "malicious"
    attacker_knowledge: ClassVar[str] = ("crafts the model it sends (imprint block); public data of the same kind "
                                         "for the bins; the protocol; the number of samples")
    uses_attacker_data = True  # the bins come from the attacker's split; clients never hold it

    def total_iterations(self) -> int:
        return 1

    def crafter(self, public: torch.Tensor):
        """The server's crafting step for ``simulate(craft=...)``, from its public samples."""
        from ..malicious.craft import ImprintCraft, imprint_crafter

        return imprint_crafter(public, ImprintCraft(bins=self.config.bins, statistic=self.config.statistic))

    def reconstruct(
        self, observation: Observation, *, generator: torch.Generator, device: torch.device, progress: Progress
    ) -> Reconstruction:
        if observation.model.name != "imprint":
            raise GradleakError(f"imprint reads a crafted model's update; the observation's model is "
                                f"{observation.model.name!r} (run it with --attack imprint on a dataset, which crafts "
                                "the model, or observe --model imprint)")
        model = observation.build_model(device="cpu")
        assert isinstance(model, ImprintModel)
        cfg = self.config
        readings = read_bins(observation.update["imprint.weight"], observation.update["imprint.bias"],
                             empty_tol=cfg.empty_tol)
        steps = observation.protocol.local_steps(observation.num_samples)
        check_bins(readings, observation, model, range_tol=cfg.range_tol,
                   count_tol=cfg.count_tol if steps == 1 else cfg.count_tol_steps)
        progress(1)
        n, shape = observation.num_samples, observation.input_shape
        lo, hi = value_range(observation, range_tol=0.0)
        singles = [r for r in readings if r.single]
        mixed = sorted((r for r in readings if not r.single), key=lambda r: -abs(r.weight))
        chosen = (singles + mixed)[:n]
        inputs = ((lo + hi) / 2).expand(n, math.prod(shape)).clone()
        labels = torch.zeros(n, dtype=torch.long)
        for slot, r in enumerate(chosen):
            inputs[slot] = r.image if r.single else torch.clamp(r.image, lo, hi)
            labels[slot] = r.label
        certified = torch.zeros(n, dtype=torch.bool)
        certified[: min(len(singles), n)] = True
        out_range = sum(not r.in_range for r in mixed)
        out_bin = sum(r.in_range and not r.in_bin for r in mixed)
        counted = sorted(r.count for r in mixed if r.in_range and r.in_bin)
        notes = [
            f"{model.imprint.out_features} bins, {len(readings)} non-empty for {n} samples; {len(singles)} certified "
            f"single (in range, in its bin, own gradient matches one sample)",
            f"rejected bins: {out_range} outside the data range, {out_bin} outside their bin, {len(counted)} whose "
            f"gradient reads as more than one sample" + (f" (median {counted[len(counted) // 2]:.2g})" if counted else ""),
            "collisions (bins holding several samples) are mixtures, not recoveries; unfilled slots are mid-range",
        ]
        if observation.protocol.update_kind == "weight_delta" and observation.protocol.local_steps(n) > 1:
            notes.append("fedavg with several local steps: exact while no sample changes bin between steps")
        if observation.train_mode:
            notes.append("train-mode BatchNorm couples the batch: the count check (3) is approximate")
        return Reconstruction(
            inputs=inputs.reshape(n, *shape).float().contiguous(),
            labels=labels,
            attack=self.name,
            config=dataclasses.asdict(cfg),
            label_method="imprint-count" if singles else "none",
            loss_trace=[float(len(singles))],
            restart_losses=[0.0],
            restart_traces=[[0.0]],
            iterations=1,
            notes=notes,
            certified=certified,
        )
