"""R-GAP's rank analysis (Sec. 4): can a network's gradient reveal its input, layer by layer?

``rank_analysis(model, input_shape=...)`` counts each layer's unknowns and constraints
(:mod:`.counts`), adds the virtual constraints inherited from the layers below, and computes
the rank analysis index RA-i = |x_i| - gradient - weight - virtual constraints. Beside the
count it computes the actual numerical rank of every layer's stacked system ``[W_i; K_i]``
for a random input (float64, the systems R-GAP solves), so the count can be checked against
linear algebra.

Conventions (documented because the paper's are loose):

* ``index`` is the maximum RA-i over layers, virtual constraints included: the paper's
  security level of the network. ``full_rank`` is ``index <= 0`` - a count of exactly 0 means
  as many independent constraints as unknowns (every fully connected layer has 0 on its own),
  which is a unique solution.
* ``closed_form_index`` leaves the virtual constraints out: what R-GAP's layer-by-layer solve
  can use. ``closed_form_full_rank`` says whether R-GAP itself can recover the input exactly;
  where the numerical rank was computed it decides. CNN6-d is the paper's example of a net
  whose closed form is rank deficient while the virtual constraints still (nearly) suffice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import GradleakError
from .chain import ChainLayer, layer_chain, layer_signals
from .counts import count_layer, virtual_constraints
from .operators import LayerMaps
from .system import LayerSystem, small_ops

MAX_DENSE = 6000  # largest layer input whose numerical rank is computed (6000^2 float64 = 288 MB)


@dataclass(frozen=True)
class RankRow:
    """One layer of the table (input side first)."""

    name: str  # module path of the layer
    kind: str  # "conv" or "linear"
    unknowns: int  # |x_i|
    gradient_constraints: int  # independent gradient constraints (<= weights)
    weight_constraints: int  # weight constraints beyond the gradient ones (= outputs - overlap)
    virtual_constraints: int  # |V_i|, inherited from over-determined layers below
    ra_index: int  # |x_i| - gradient - weight - virtual
    closed_form_index: int  # ra_index without the virtual constraints (R-GAP's own system)
    weights: int  # |W_i|: the paper's raw count of gradient constraints
    outputs: int  # |z_i|: the paper's raw count of weight constraints
    paper_index: int  # |x_i| - |W_i| - |z_i| - |V_i| with the raw counts
    numerical_rank: int | None  # rank of [W_i; K_i] for a random input; None when not computed
    smallest_singular: float | None  # its smallest singular value relative to the largest (a bound when full rank)


@dataclass(frozen=True)
class RankReport:
    """The per-layer table and the network's verdict."""

    input_shape: tuple[int, ...]
    layers: list[RankRow]
    index: int  # max RA-i over layers (virtual constraints included)
    full_rank: bool  # index <= 0
    closed_form_index: int  # max RA-i without virtual constraints
    closed_form_full_rank: bool  # R-GAP can recover exactly (numerical rank decides where computed)
    critical_layer: str  # the layer with the largest closed-form index
    verdict: str  # one plain sentence
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


def _numerical(chain: list[ChainLayer], input_shape: tuple[int, ...], seed: int) -> list[tuple[int, float] | None]:
    """Numerical rank of every layer's system for one random input and label, in float64."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(input_shape, generator=gen, dtype=torch.float64)
    classes = chain[-1].module.out_features
    label = int(torch.randint(max(classes, 2), (1,), generator=gen))

    def loss(logits: torch.Tensor) -> torch.Tensor:
        from ..attacks.rgap_head import sample_loss  # late import: attacks build on analysis

        return sample_loss(logits, label)

    xs, zs, ks = layer_signals(chain, x, loss)
    out: list[tuple[int, float] | None] = []
    for layer, xi, zi, ki in zip(chain, xs, zs, ks):
        if layer.in_size > MAX_DENSE:
            out.append(None)
            continue
        grad = LayerMaps(layer, ki).gradient_rows(xi.reshape(1, -1))
        out.append(LayerSystem(layer, k=ki, z=zi, grad=grad).rank())
    return out


def rank_analysis(model: nn.Module, *, input_shape: tuple[int, ...], numerical: bool = True, seed: int = 0) -> RankReport:
    """Rank analysis of ``model`` for inputs of ``input_shape`` (per sample, e.g. (3, 32, 32)).

    Raises :class:`GradleakError` naming the layer when the model is not a chain R-GAP can
    invert (ReLU, pooling, normalisation, skip connections ...).
    """
    if not input_shape or any(int(s) < 1 for s in input_shape):
        raise GradleakError(f"input shape must be positive sizes, got {tuple(input_shape)}")
    input_shape = tuple(int(s) for s in input_shape)
    model = _float64_copy(model)
    with small_ops():
        chain = layer_chain(model, input_shape=input_shape)
        counts = [count_layer(layer) for layer in chain]
        virtual = virtual_constraints(counts)
        ranks = _numerical(chain, input_shape, seed) if numerical else [None] * len(chain)
    rows = []
    for layer, c, v, r in zip(chain, counts, virtual, ranks):
        rows.append(RankRow(
            name=layer.name, kind="conv" if layer.is_conv else "linear", unknowns=c.unknowns,
            gradient_constraints=c.gradient_constraints, weight_constraints=c.weight_constraints,
            virtual_constraints=v, ra_index=c.closed_form_index - v, closed_form_index=c.closed_form_index,
            weights=c.weights, outputs=c.outputs, paper_index=c.unknowns - c.weights - c.outputs - v,
            numerical_rank=None if r is None else r[0], smallest_singular=None if r is None else r[1],
        ))
    return _report(input_shape, rows, skipped=numerical and any(r is None for r in ranks))


def _float64_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).to(torch.float64).eval()


def _deficient(row: RankRow) -> bool:
    if row.numerical_rank is not None:
        return row.numerical_rank < row.unknowns
    return row.closed_form_index > 0


def _report(input_shape: tuple[int, ...], rows: list[RankRow], *, skipped: bool) -> RankReport:
    index = max(r.ra_index for r in rows)
    closed = max(r.closed_form_index for r in rows)
    critical = max(rows, key=lambda r: (_deficient(r), r.closed_form_index))
    closed_full = not any(_deficient(r) for r in rows)
    notes = []
    for r in rows:
        if r.numerical_rank is not None and (r.numerical_rank < r.unknowns) != (r.closed_form_index > 0):
            notes.append(f"{r.name}: the count (closed-form RA-i {r.closed_form_index:+d}) and the numerical "
                         f"rank ({r.numerical_rank} of {r.unknowns}) disagree; the numerical rank is used")
    if skipped:
        notes.append(f"numerical rank skipped for layers with more than {MAX_DENSE} unknowns")
    where = f"layer {critical.name!r}"
    if critical.numerical_rank is not None:
        rank_text = f"numerical rank {critical.numerical_rank} of {critical.unknowns}"
    else:
        rank_text = f"{critical.unknowns} unknowns"
    if closed_full:
        verdict = (f"full recovery possible: every layer's R-GAP system is full rank "
                   f"(RA-i = {index:+d}, closed-form RA-i = {closed:+d})")
    elif index <= 0:
        verdict = (f"R-GAP cannot recover the input exactly: {where} is rank deficient "
                   f"(closed-form RA-i = {critical.closed_form_index:+d}, {rank_text}); counting the "
                   f"{critical.virtual_constraints} virtual constraints from the layers below "
                   f"(RA-i = {index:+d}) the whole gradient may still determine it, so optimisation attacks can")
    else:
        verdict = (f"full recovery not possible: {where} is rank deficient (RA-i = {index:+d}, {rank_text}); "
                   f"larger RA-i means noisier reconstructions")
    return RankReport(
        input_shape=input_shape, layers=rows, index=index, full_rank=index <= 0, closed_form_index=closed,
        closed_form_full_rank=closed_full, critical_layer=critical.name, verdict=verdict, notes=notes,
    )
