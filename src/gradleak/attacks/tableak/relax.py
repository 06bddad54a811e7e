"""The softmax relaxation of a mixed-type record (TabLeak's structural prior).

A record is searched through unconstrained variables: a logit per category of a categorical
variable (the one-hot block is ``softmax(logits / T)``), one logit per binary column
(``sigmoid(logit / T)``), and the value itself for continuous columns, kept inside the box
the attacker knows from its own data. The temperature ``T`` falls geometrically over the run,
so blocks start soft (gradients reach every category) and end nearly one-hot; at the end the
record is projected (arg-max category, binary at 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...data.schema import RecordSchema


@dataclass(frozen=True)
class Temperature:
    """Geometric schedule from ``start`` to ``end`` over a run of ``steps`` iterations."""

    start: float  # temperature of the first step
    end: float  # temperature of the last step
    steps: int  # iterations of the run

    def at(self, step: int) -> float:
        fraction = min(max(step, 0), max(self.steps - 1, 1)) / max(self.steps - 1, 1)
        return self.start * (self.end / self.start) ** fraction


class RelaxedRecords:
    """Variables of one ensemble member and the map from them to (relaxed) records."""

    def __init__(self, *, schema: RecordSchema, lower: torch.Tensor, upper: torch.Tensor) -> None:
        self.schema = schema
        self.groups = schema.groups()
        self.flags = schema.column_mask("binary")
        self.continuous = schema.column_mask("continuous")
        self.lower, self.upper = lower, upper  # per column box of continuous values (standardised units)

    def initial(self, *, shape: tuple[int, ...], mean: torch.Tensor, std: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
        """Continuous columns drawn from the attacker's Gaussian, logits from its category shares plus noise."""
        noise = torch.randn(shape, generator=generator, dtype=torch.float64)
        z = mean + std * noise
        share = mean.clamp(0.02, 0.98)
        z[..., self.flags] = torch.logit(share[self.flags]) + noise[..., self.flags]
        for start, stop in self.groups:
            z[..., start:stop] = share[start:stop].log() + noise[..., start:stop]
        z[..., self.continuous] = torch.maximum(torch.minimum(z[..., self.continuous], self.upper[self.continuous]),
                                                self.lower[self.continuous])
        return z

    def clamp_(self, z: torch.Tensor) -> None:
        """Keep continuous values inside their box (in place, outside autograd)."""
        with torch.no_grad():
            c = self.continuous.to(z.device)
            z[..., c] = torch.maximum(torch.minimum(z[..., c], self.upper.to(z)[c]), self.lower.to(z)[c])

    def relaxed(self, z: torch.Tensor, *, temperature: float) -> torch.Tensor:
        """Records with soft categorical blocks and binary columns in (0, 1)."""
        flags = self.flags.to(z.device)
        x = torch.where(flags, torch.sigmoid(z / temperature), z) if bool(flags.any()) else z
        if not self.groups:
            return x
        parts, position = [], 0
        for start, stop in self.groups:  # plain columns between groups pass through unchanged
            if start > position:
                parts.append(x[..., position:start])
            parts.append(torch.softmax(z[..., start:stop] / temperature, dim=-1))
            position = stop
        if position < z.shape[-1]:
            parts.append(x[..., position:])
        return torch.cat(parts, dim=-1)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """Hard records: arg-max category one-hot, binary columns at logit 0 (= 0.5)."""
        out = z.detach().clone()
        for start, stop in self.groups:
            out[..., start:stop] = torch.nn.functional.one_hot(out[..., start:stop].argmax(-1), stop - start).to(out)
        f = self.flags.to(out.device)
        out[..., f] = (out[..., f] > 0).to(out)
        return out
