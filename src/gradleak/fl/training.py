"""Server-side preparation of the global model before a client sees it.

Attacks behave very differently on untrained and trained models (gradients of a trained model
are smaller and less informative), so users can train the global model for a number of steps
on data disjoint from the attacked client's batch.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Dataset


def pretrain(
    model: nn.Module,
    *,
    data: Dataset,
    steps: int,
    generator: torch.Generator,
    batch_size: int = 32,
    lr: float = 1e-3,
    progress: Callable[[int], None] = lambda _n: None,
) -> list[float]:
    """Train ``model`` in place with Adam for ``steps`` mini-batches; returns the loss trace.

    The model's train/eval mode is restored afterwards.
    """
    if steps <= 0:
        return []
    was_training = model.training
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses: list[float] = []
    batch_size = min(batch_size, len(data))
    for _ in range(steps):
        idx = torch.randint(len(data), (batch_size,), generator=generator)
        logits = model(data.inputs[idx])
        if logits.shape[-1] == 1:
            loss = F.binary_cross_entropy_with_logits(logits.squeeze(-1), data.labels[idx].float())
        else:
            loss = F.cross_entropy(logits, data.labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        progress(1)
    model.train(was_training)
    return losses
