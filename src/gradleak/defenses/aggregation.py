"""Defenses that change how much data one shared update mixes: batch size, local steps,
secure aggregation.

Secure aggregation (Bonawitz et al. 2017) is simulated with its pairwise masks: clients i < j
share a random mask m_ij; client i adds it, client j subtracts it, so every individual masked
update looks random while their sum is the sum of the true updates. The server therefore
observes only the aggregate of ``k`` clients, which it divides by ``k`` (FedAvg's mean): the
attacker faces one update computed from ``k * B`` samples.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ..fl.protocol import Params, Protocol, client_update
from .base import Defense, register_defense, require

MASK_SCALE = 10.0  # std of the pairwise masks: far above update magnitudes (masked updates look random)


def mask_updates(updates: list[Params], *, generator: torch.Generator) -> list[Params]:
    """Pairwise-masked copies of ``updates`` (float64 masks, so the sum cancels to rounding)."""
    masked = [{k: v.double().clone() for k, v in u.items()} for u in updates]
    for i in range(len(updates)):
        for j in range(i + 1, len(updates)):
            for k, v in updates[i].items():
                m = MASK_SCALE * torch.randn(v.shape, generator=generator, dtype=torch.float64).to(v.device)
                masked[i][k] += m
                masked[j][k] -= m
    return masked


def secure_sum(masked: list[Params], *, dtype: torch.dtype = torch.float32) -> Params:
    """What the server can compute from masked updates: their sum (the masks cancel)."""
    return {k: torch.stack([u[k] for u in masked]).sum(0).to(dtype) for k in masked[0]}


@register_defense("secagg", description="secure aggregation: the server sees only the mean of k clients' updates (secagg:k)")
class SecureAggregation(Defense):
    takes_value = True
    knowledge = "architecture, weights, protocol and k; reconstructs all k*B samples of the aggregate"

    def check(self) -> None:
        require(self.value is not None and self.value >= 1 and float(self.value).is_integer(),
                f"secagg needs an integer number of clients >= 1, got {self.value}")

    @property
    def clients(self) -> int:
        return int(self.value)

    def batch_size(self, batch_size: int) -> int:
        return batch_size * self.clients  # the observation mixes k clients' batches

    def shared_update(
        self, model: nn.Module, *, inputs: torch.Tensor, labels: torch.Tensor, protocol: Protocol,
        generator: torch.Generator, client: int = 0, shuffle_seed: int = 0,
    ) -> Params:
        chunks = zip(inputs.chunk(self.clients), labels.chunk(self.clients))
        updates = [client_update(model, inputs=x, labels=y, protocol=protocol, shuffle_seed=shuffle_seed + i)
                   for i, (x, y) in enumerate(chunks)]
        total = secure_sum(mask_updates(updates, generator=generator))
        return {k: v / self.clients for k, v in total.items()}

    def aggregate(self, updates: list[Params], *, generator: torch.Generator) -> Params:
        total = secure_sum(mask_updates(updates, generator=generator))
        return {k: v / len(updates) for k, v in total.items()}


@register_defense("batch", description="the client shares one update of a larger batch of N samples (batch:N)")
class LargerBatch(Defense):
    takes_value = True
    knowledge = "architecture, weights, protocol and the batch size"

    def check(self) -> None:
        require(self.value is not None and self.value >= 1 and float(self.value).is_integer(),
                f"batch needs an integer batch size >= 1, got {self.value}")

    def batch_size(self, batch_size: int) -> int:
        return int(self.value)

    def details(self) -> dict[str, Any]:
        return {"batch_size": int(self.value)}


@register_defense("steps", description="the client takes K local SGD steps (fedavg) before sharing (steps:K)")
class LocalSteps(Defense):
    takes_value = True
    knowledge = "architecture, weights, protocol with its local steps and learning rate"

    def check(self) -> None:
        require(self.value is not None and self.value >= 1 and float(self.value).is_integer(),
                f"steps needs an integer number of local steps >= 1, got {self.value}")

    def protocol(self, protocol: Protocol) -> Protocol:
        return dataclasses.replace(protocol, name="fedavg", local_epochs=int(self.value), local_batch_size=None)
