"""Counting R-GAP's constraints per layer, as the paper's rank analysis does, but honestly.

The paper counts ``|W_i|`` gradient constraints and ``|z_i|`` weight constraints. Two facts
make fewer of them independent, and both are visible in the numerical rank (CNN6-d's second
convolution: 2160 + 1620 counted against 3468 unknowns, yet rank 3188):

* **Aggregation** (the paper's own remark on CNNs): ``K^T K = I_C (x) G`` with ``G`` built from
  the ``kh*kw`` strided shifts of the ``O x P`` backward signal ``k``. Pixels split into
  ``stride_h * stride_w`` residue classes; a class is read by the kernel offsets with that
  residue, each contributing at most ``rank(k) = min(O, P)`` patterns. Per input channel the
  gradient rank is ``sum over classes of min(pixels read in the class, offsets x rank(k))``.
* **Overlap**: ``w (k U^T)^T = (w U) k^T`` - the weight constraints projected on ``k`` are
  implied by the gradient constraints, ``O * rank(k)`` of them (for a fully connected layer,
  all ``O``: its gradient alone fixes the input).

Virtual constraints (Sec. 4) are inherited from over-determined layers below: layer ``n``'s
output lies in the range of ``W_n``, ``max(|z_n| - |x_n|, 0)`` constraints, less the deficit
of a rank-deficient layer ``n``, summed over ``n < i`` (the paper's approximation, whose
printed formula is garbled; this is the reading its derivation, Eqs. 17-20, supports).
"""

from __future__ import annotations

from dataclasses import dataclass

from .chain import ChainLayer
from .operators import Geometry


@dataclass(frozen=True)
class LayerCount:
    """Constraint counts of one layer (no virtual constraints: those need the layers below)."""

    unknowns: int  # |x_i|: entries of the layer's input (padding excluded: padded zeros are known)
    weights: int  # |W_i|: gradient entries, the paper's count of gradient constraints
    outputs: int  # |z_i|: output entries, the paper's count of weight constraints
    gradient_constraints: int  # independent gradient constraints (after aggregation)
    overlap: int  # weight constraints already implied by the gradient constraints

    @property
    def weight_constraints(self) -> int:
        """Weight constraints beyond what the gradient constraints already say."""
        return self.outputs - self.overlap

    @property
    def closed_form_index(self) -> int:
        """RA-i of the layer's own system (what R-GAP solves): > 0 means rank deficient."""
        return self.unknowns - self.gradient_constraints - self.weight_constraints


def _reached(size: int, out: int, kernel: int, stride: int, pad: int, dilation: int) -> dict[int, tuple[int, int]]:
    """Per residue class (mod stride) of padded coordinates: (offsets, interior positions read)."""
    classes: dict[int, tuple[int, set[int]]] = {}
    for a in range(kernel):
        r = (a * dilation) % stride
        count, rows = classes.get(r, (0, set()))
        rows |= {stride * p + a * dilation for p in range(out) if pad <= stride * p + a * dilation < pad + size}
        classes[r] = (count + 1, rows)
    return {r: (n, len(rows)) for r, (n, rows) in classes.items()}


def count_layer(layer: ChainLayer) -> LayerCount:
    """Counts for one layer of a checked chain."""
    geo = Geometry.of(layer)
    c, h, w = geo.in_shape
    o, ho, wo = geo.out_shape
    rank_k = min(o, ho * wo)
    rows = _reached(h, ho, geo.kernel[0], geo.stride[0], geo.padding[0], geo.dilation[0])
    cols = _reached(w, wo, geo.kernel[1], geo.stride[1], geo.padding[1], geo.dilation[1])
    per_channel = sum(
        min(nr * nc, oh * ow * rank_k) for oh, nr in rows.values() for ow, nc in cols.values()
    )
    gradient = min(c * per_channel, geo.n, o * geo.patch_size)
    return LayerCount(
        unknowns=geo.n, weights=o * geo.patch_size, outputs=o * ho * wo,
        gradient_constraints=gradient, overlap=min(o * rank_k, o * ho * wo),
    )


def virtual_constraints(counts: list[LayerCount]) -> list[int]:
    """|V_i| for each layer (input side first): constraints inherited from the layers below."""
    out, total = [], 0
    for count in counts:
        out.append(max(total, 0))
        surplus = max(count.outputs - count.unknowns, 0)
        total += surplus - max(count.closed_form_index, 0)
    return out
