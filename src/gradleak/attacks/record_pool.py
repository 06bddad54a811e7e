"""Pooled ensembling and the confidence per feature (TabLeak's variance reduction and assessment).

Several independent reconstructions of the same batch come back in arbitrary sample order.
Each is matched sample by sample to a reference member (Hungarian on the features), then the
aligned members vote: continuous values by median, categorical and binary variables by
majority (ties go to the reference member). The agreement of the votes is the attacker's own
confidence in every variable of every record, in [0, 1]:

- categorical / binary: ``1 - H(votes) / log K`` (K categories, binary K = 2): 1 when every
  member chose the same value, 0 when the votes are spread evenly;
- continuous: ``exp(-s / scale)`` with ``s`` the standard deviation of the members' values in
  standardised units: 1 when they coincide, ``1/e`` when they spread by ``scale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..data.schema import RecordSchema
from ..metrics.matching import assign


@dataclass(frozen=True)
class Pooled:
    records: torch.Tensor  # pooled records, the reference member's sample order
    confidence: torch.Tensor  # records.shape[:-1] + (variables,), in [0, 1], schema feature order
    aligned: torch.Tensor  # members x records: every member in the reference's sample order


def align(members: Sequence[torch.Tensor], *, reference: int) -> torch.Tensor:
    """Stack of members, each permuted onto the reference's samples (Hungarian, MSE cost)."""
    ref = members[reference].double()
    return torch.stack([m.double()[assign(m.double(), ref)] for m in members])


def _normalised_entropy(shares: torch.Tensor) -> torch.Tensor:
    """Entropy of distributions along the last axis over its maximum ``log K``."""
    k = shares.shape[-1]
    terms = torch.where(shares > 0, -shares * shares.clamp(min=1e-300).log(), torch.zeros_like(shares))
    return terms.sum(-1) / math.log(k)


def pool(members: Sequence[torch.Tensor], *, schema: RecordSchema, reference: int,
         spread_scale: float) -> Pooled:
    """Median / majority pooling of projected members, and the confidence of every variable."""
    stacked = align(members, reference=reference)
    ref = stacked[reference]
    out = ref.clone()
    confidence = []
    m = stacked.shape[0]
    for f in schema.features:
        block = stacked[..., f.start:f.stop]
        if f.kind == "continuous":
            out[..., f.start] = block[..., 0].median(dim=0).values
            spread = block[..., 0].std(dim=0, unbiased=False)
            confidence.append(torch.exp(-spread / spread_scale))
        elif f.kind == "binary":
            share = (block[..., 0] > 0.5).double().mean(0)
            vote = torch.where(share == 0.5, ref[..., f.start], (share > 0.5).double())
            out[..., f.start] = vote
            confidence.append(1 - _normalised_entropy(torch.stack([share, 1 - share], dim=-1)))
        else:
            counts = torch.nn.functional.one_hot(block.argmax(-1), f.stop - f.start).double().sum(0)
            choice = (counts + 0.5 * ref[..., f.start:f.stop]).argmax(-1)  # ties: the reference's category
            out[..., f.start:f.stop] = torch.nn.functional.one_hot(choice, f.stop - f.start).double()
            confidence.append(1 - _normalised_entropy(counts / m))
    return Pooled(records=out, confidence=torch.stack(confidence, dim=-1).clamp(0, 1), aligned=stacked)
