"""R-GAP's recursion (Algorithm 1) on any model that is a chain of invertible layers.

From the output layer's readings (:mod:`.rgap_head`) down to the input, each layer's input is
the least-squares solution of its stacked weight and gradient constraints
(:mod:`gradleak.analysis.system`), with

* ``z_i = sigma_i^{-1}(x_{i+1}) - b_i`` (the layer's bias-free pre-activation), and
* ``k_i = (W_{i+1}^T k_{i+1}) * sigma_i'(z_i)`` (its backward signal).

All readings are followed in lock-step; one whose layer system is clearly inconsistent
(residual > ``prune`` x the best reading's and > 1e-6) is dropped there, which saves the
full recursion for the wrong sign of a two-class head. The survivors are scored by how well
the gradient of their reconstruction reproduces the observed one; readings that reproduce it
equally well (twin data) are told apart by the data box the attacker knows, and the result
says the choice was ambiguous. Works on a plain ``nn.Module`` and a gradient dict, so the
tests can use any small network.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ..analysis.chain import ChainLayer, layer_chain
from ..analysis.operators import LayerMaps
from ..analysis.system import LayerSystem, SolveSettings, small_ops
from ..errors import GradleakError
from .rgap_head import Branch, head_branches, sample_loss

TIE_RTOL = 1e-3  # readings whose gradient fit is within this (relative) of the best are ties
# ... or within sqrt(eps) of it in absolute terms (eps of the coarser of the working and the
# observed precision: a float32 update cannot tell fits apart below ~3.5e-4)
PRUNE_FLOOR = 1e-6  # a layer residual below this never gets a reading dropped


@dataclass(eq=False)
class Reading:
    """One output-layer reading followed towards the input."""

    branch: Branch
    x: torch.Tensor  # flat input of the current (finally: the first) layer
    k: torch.Tensor  # backward signal of the current layer's output
    residuals: list[float] = field(default_factory=list)  # per layer, output to input
    methods: list[str] = field(default_factory=list)  # "cg" / "cholesky" / "pinv" per layer
    seconds: list[float] = field(default_factory=list)  # CPU seconds (this process) per layer, output to input
    fit: float = math.inf  # relative distance of its gradient to the observed one
    outside: float = 0.0  # mean squared distance outside the data box (relative to its width)
    extent: float = 0.0  # value range inside the box (relative to its width)

    @property
    def full_rank(self) -> bool:
        return "pinv" not in self.methods


@dataclass
class Inversion:
    """Every reading that reached the input, the chosen one, and whether the choice was forced."""

    readings: list[Reading]
    chosen: int
    ambiguous: bool  # another reading reproduces the update as well (twin data)
    dropped: list[Reading]  # readings abandoned at an inconsistent layer

    @property
    def best(self) -> Reading:
        return self.readings[self.chosen]


def _grad_of(param: torch.Tensor | None, gradients: dict[str, torch.Tensor], names: dict[int, str]) -> torch.Tensor | None:
    return None if param is None else gradients[names[id(param)]]


def _step(below: ChainLayer, above: ChainLayer, reading: Reading, grad: torch.Tensor, settings: SolveSettings) -> None:
    """Move ``reading`` one layer down: from the input of ``above`` to the input of ``below``."""
    start = time.process_time()
    act = below.activation
    z = act.inverse(reading.x)  # pre-activation of ``below``, bias included
    k = LayerMaps(above, reading.k).weight_adjoint(reading.k.reshape(1, -1)).reshape(-1) * act.derivative(z)
    bias = below.module.bias
    if bias is not None:
        z = z - bias.detach().to(z.dtype).repeat_interleave(below.out_size // below.out_channels)
    solution = LayerSystem(below, k=k, z=z, grad=grad).solve(settings)
    reading.x, reading.k = solution.x, k
    reading.residuals.append(solution.residual)
    reading.methods.append(solution.method)
    reading.seconds.append(time.process_time() - start)


def _prune(readings: list[Reading], factor: float) -> tuple[list[Reading], list[Reading]]:
    ok = [r for r in readings if math.isfinite(r.residuals[-1]) and bool(torch.isfinite(r.x).all())]
    if not ok:
        return readings, []
    best = min(r.residuals[-1] for r in ok)
    limit = max(factor * best, PRUNE_FLOOR)
    keep = [r for r in ok if r.residuals[-1] <= limit]
    return keep, [r for r in readings if all(r is not k for k in keep)]


def chain_gradients(chain: list[ChainLayer], x: torch.Tensor, label: int) -> list[torch.Tensor]:
    """Weight (and bias) gradients of one sample, layer by layer, with the chain's own operators
    (unfold + matmul: far faster than float64 ``conv2d`` on a CPU)."""
    zero = torch.zeros(1, dtype=x.dtype, device=x.device)
    maps = [LayerMaps(layer, zero.expand(layer.out_size)) for layer in chain]
    xs, zs, h = [], [], x.reshape(1, -1)
    for layer, m in zip(chain, maps):
        xs.append(h)
        zs.append(m.weight_rows(h).reshape(-1) + m.bias_vector())
        h = layer.activation.forward(zs[-1]).reshape(1, -1)
    with torch.enable_grad():
        logits = zs[-1].detach().requires_grad_(True)
        (k,) = torch.autograd.grad(sample_loss(logits.reshape(1, -1), label), logits)
    out: list[torch.Tensor] = []
    for i in reversed(range(len(chain))):
        m = maps[i]
        m.k = k.reshape(m.k.shape)
        grads = [m.gradient_rows(xs[i]).reshape(-1)]
        if chain[i].module.bias is not None:
            grads.append(m.k.sum(1))
        out = grads + out
        if i > 0:
            k = m.weight_adjoint(k.reshape(1, -1)).reshape(-1) * chain[i - 1].activation.derivative(zs[i - 1])
    return out


def _observed(chain: list[ChainLayer], grads: dict[str, torch.Tensor], names: dict[int, str]) -> torch.Tensor:
    parts = []
    for layer in chain:
        parts.append(grads[names[id(layer.module.weight)]].reshape(-1))
        if layer.module.bias is not None:
            parts.append(grads[names[id(layer.module.bias)]].reshape(-1))
    return torch.cat(parts)


def gradient_fit(chain: list[ChainLayer], x: torch.Tensor, label: int, target: torch.Tensor) -> float:
    """Relative L2 distance between the gradient of ``(x, label)`` and the observed one."""
    got = torch.cat(chain_gradients(chain, x, label))
    return float((got - target).norm() / target.norm().clamp(min=1e-300))


def invert(
    model: nn.Module, *, gradients: dict[str, torch.Tensor], input_shape: tuple[int, ...],
    labels: list[int] | None = None, box: tuple[float, float] = (0.0, 1.0),
    settings: SolveSettings = SolveSettings(), prune: float = 10.0, relaxed: bool = False,
) -> Inversion:
    """R-GAP on ``model`` (its dtype is the working precision) from one sample's ``gradients``.

    ``gradients`` maps parameter names to dL/dparameter; ``labels`` restricts the labels
    considered (None: derived from the output layer); ``relaxed`` accepts a best-fitting head
    scale when none is exact (batches).
    """
    with small_ops():
        return _invert(model, gradients=gradients, input_shape=input_shape, labels=labels, box=box,
                       settings=settings, prune=prune, relaxed=relaxed)


def _invert(model, *, gradients, input_shape, labels, box, settings, prune, relaxed) -> Inversion:
    chain = layer_chain(model, input_shape=input_shape)
    names = {id(p): n for n, p in model.named_parameters()}
    missing = sorted(set(names.values()) - set(gradients))
    if missing:
        raise GradleakError(f"R-GAP needs the gradient of every parameter; missing: {', '.join(missing[:3])}")
    dtype = next(model.parameters()).dtype
    coarsest = max((torch.finfo(g.dtype).eps for g in gradients.values()), default=0.0)
    floor = max(torch.finfo(dtype).eps, coarsest) ** 0.5  # fits closer than this are indistinguishable
    grads = {n: g.to(dtype) for n, g in gradients.items()}
    head = chain[-1].module
    branches = head_branches(
        weight=head.weight.detach(), bias=None if head.bias is None else head.bias.detach(),
        grad_w=_grad_of(head.weight, grads, names), grad_b=_grad_of(head.bias, grads, names),
        labels=labels, relaxed=relaxed,
    )
    if not branches:
        raise GradleakError("R-GAP found no consistent reading of the output layer (zero or not rank-one update)")
    # In a bias-free chain of positively homogeneous activations, readings with the same label
    # and sign of t are exact multiples of each other at every layer (Appendix B: twin data is
    # proportional to the real data), so only one per group is solved.
    homogeneous = all(layer.activation.homogeneous and layer.module.bias is None for layer in chain)
    groups: dict[tuple, list[Reading]] = {}
    for i, b in enumerate(branches):
        key = (b.label, b.scale > 0) if homogeneous and b.scale != 0 else (i,)
        groups.setdefault(key, []).append(Reading(b, b.x, b.k))
    alive = [g[0] for g in groups.values()]
    dropped: list[Reading] = []
    for below, above in zip(reversed(chain[:-1]), reversed(chain[1:])):
        grad = _grad_of(below.module.weight, grads, names)
        for reading in alive:
            _step(below, above, reading, grad, settings)
        alive, gone = _prune(alive, prune)
        dropped += gone
    for group in groups.values():
        lead = group[0]
        for r in group[1:]:
            c = r.branch.scale / lead.branch.scale
            r.x, r.k = c * lead.x, lead.k / c
            r.residuals, r.methods, r.seconds = list(lead.residuals), list(lead.methods), [0.0] * len(lead.seconds)
            (alive if any(lead is a for a in alive) else dropped).append(r)
    target = _observed(chain, grads, names)
    lo, hi = box
    width = max(hi - lo, 1e-12)
    for r in alive:
        r.fit = gradient_fit(chain, r.x, r.branch.label, target)
        r.outside = float((((lo - r.x).clamp(min=0) + (r.x - hi).clamp(min=0)) / width).pow(2).mean())
        inside = r.x.clamp(lo, hi)
        r.extent = float(inside.max() - inside.min()) / width
    chosen, ambiguous = choose(alive, floor=floor)
    return Inversion(alive, chosen, ambiguous, dropped)


def choose(readings: list[Reading], *, floor: float) -> tuple[int, bool]:
    """The best-fitting reading; among ties, least mass outside the box, then the widest range."""
    best = min(r.fit for r in readings)
    level = best * (1 + TIE_RTOL) + floor
    ties = [i for i, r in enumerate(readings) if r.fit <= level]
    pick = min(ties, key=lambda i: (round(readings[i].outside, 6), -readings[i].extent))
    return pick, len(ties) > 1
