"""Gradient matching: simulate the client's update for candidate data, measure the mismatch."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..fl.protocol import compute_update
from ..observation import Observation
from ..registry import Registry

Distance = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], torch.Tensor]
DISTANCES: Registry[Distance] = Registry("gradient distance")


@DISTANCES.register("l2", description="sum of squared differences (DLG)")
def l2_distance(update: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum(((u - t) ** 2).sum() for u, t in zip(update, target))  # type: ignore[return-value]


@DISTANCES.register("cosine", description="1 - cosine similarity of the concatenated updates (IG)")
def cosine_distance(update: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    dot = sum((u * t).sum() for u, t in zip(update, target))
    u_norm = torch.sqrt(sum((u * u).sum() for u in update))  # type: ignore[arg-type]
    t_norm = torch.sqrt(sum((t * t).sum() for t in target))  # type: ignore[arg-type]
    return 1.0 - dot / (u_norm * t_norm + 1e-12)


class GradientMatcher:
    """Differentiable ``distance(update(inputs, labels), observed update)``.

    The model is rebuilt from the observation only (weights, buffers, train/eval mode,
    protocol), so the attack simulates exactly what the client computed, fedavg local steps
    included.
    """

    def __init__(self, observation: Observation, *, distance: str = "l2", device: str | torch.device = "cpu") -> None:
        self.observation = observation
        self.distance = DISTANCES.get(distance)
        self.device = torch.device(device)
        self.model = observation.build_model(device=self.device)
        self.model.requires_grad_(False)
        self.params = {k: v.to(self.device).requires_grad_(True) for k, v in observation.parameters.items()}
        self.buffers = {k: v.to(self.device) for k, v in observation.buffers.items()}
        self.target = [observation.update[k].to(self.device) for k in self.params]

    def update(self, inputs: torch.Tensor, labels: torch.Tensor, *, create_graph: bool = True) -> list[torch.Tensor]:
        update = compute_update(
            self.model, params=self.params, buffers=self.buffers, inputs=inputs, labels=labels,
            protocol=self.observation.protocol, create_graph=create_graph,
        )
        return list(update.values())

    def __call__(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.distance(self.update(inputs, labels), self.target)
