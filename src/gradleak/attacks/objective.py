"""Gradient matching: simulate the client's update for candidate data, measure the mismatch."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..fl.protocol import compute_update
from ..observation import Observation
from ..registry import Registry

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DISTANCES: Registry[Distance] = Registry("gradient distance")


@DISTANCES.register("l2", description="squared L2 distance (DLG)")
def l2_distance(update: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DLG's ``||u - t||^2``, rescaled to unit target norm only when ``||t||^2 < 1``.

    Both arguments are the per-parameter updates flattened into one vector. A constant factor
    does not move the minimiser, but L-BFGS stops on absolute tolerances (loss change < 1e-9):
    on a saturated model whose update is ~1e-5 the raw loss starts below that and nothing
    happens (seen on the DLG LeNet). Rescaling every update to unit norm instead cost 25 dB on
    ordinary ones (the same tolerances then stop it too early), hence only tiny targets.
    """
    return ((update - target) ** 2).sum() / (target * target).sum().clamp(min=1e-30, max=1.0)


@DISTANCES.register("cosine", description="1 - cosine similarity of the concatenated updates (IG)")
def cosine_distance(update: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scale-invariant: a trained model's small gradients match as well as large ones."""
    return 1.0 - torch.dot(update, target) / (update.norm() * target.norm() + 1e-12)


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One vector from many tensors: a few large ops instead of many tiny ones per iteration."""
    return torch.cat([t.reshape(-1) for t in tensors])


class GradientMatcher:
    """Differentiable ``distance(update(inputs, labels), observed update)``.

    The model is rebuilt from the observation only (weights, buffers, train/eval mode,
    protocol), so the attack simulates exactly what the client computed, fedavg local steps
    included.
    """

    def __init__(
        self, observation: Observation, *, distance: str = "l2", device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.observation = observation
        self.distance = DISTANCES.get(distance)
        self.device = torch.device(device)
        # A private copy: the module's own parameters are differentiated directly (fast path).
        self.dtype = dtype
        self.model = observation.build_model(device=self.device).to(dtype)
        self.model.requires_grad_(True)
        self.target = flatten([observation.update[k].to(self.device, dtype) for k, _ in self.model.named_parameters()])

    def update(self, inputs: torch.Tensor, labels: torch.Tensor, *, create_graph: bool = True) -> list[torch.Tensor]:
        update = compute_update(
            self.model, inputs=inputs, labels=labels, protocol=self.observation.protocol, create_graph=create_graph,
        )
        return list(update.values())

    def __call__(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.distance(flatten(self.update(inputs, labels)), self.target)

    def loss_value(self, inputs: torch.Tensor, labels: torch.Tensor) -> float:
        """The distance as a number, without building the graph the search needs."""
        update = self.update(inputs, labels, create_graph=False)
        return float(self.distance(flatten(update), self.target).detach())
