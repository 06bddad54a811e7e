"""Split a linear layer's batch gradient into its samples, exactly (float64).

The layer ``z = W x + b`` is followed by a ReLU, so sample ``j``'s column ``dz_j`` of ``dL/dZ``
vanishes on every unit the sample leaves inactive. With ``dL/dW = sum_j dz_j x_j^T`` factored
as ``L R`` (:mod:`.lowrank`), each sample has a coordinate vector ``c_j`` (``x_j = R^T c_j``)
and a direction ``q_j`` (``dz_j = L q_j``) with ``c_k . q_j = 0`` for ``k != j``: the rows of
``L`` on the units sample ``j`` leaves inactive all lie in the hyperplane whose normal is ``q_j``.

Two ways to find samples, both checked the same way (:func:`accept`):

* **Ratios (peeling).** A unit active for exactly one sample has ``dW_i / db_i = x_j``. Each
  candidate ``x`` is tested: the units it leaves inactive (known, since the server knows ``W``
  and ``b``) must have rows of ``L`` with a one-dimensional common null space. A passing sample
  is subtracted (``dz_j x_j^T`` from ``dW``, ``dz_j`` from ``db``), which turns units shared
  with it into single-sample units for others: the peeling cascades. Its cost is polynomial.
* **Sampling (SPEAR, Dimitrov et al., NeurIPS 2024, Alg. 1).** When no ratio passes, draw
  ``r - 1`` rows of ``L`` at random, take their null direction, keep those whose ``L q`` is
  sparser than the ``r - 1`` zeros forced on it, select ``r`` independent ones greedily by
  sparsity, fix their scales with the bias gradient and read off ``X = Q^{-1} R``. Its cost
  grows as ``2^r``, so it finishes what peeling leaves.

Nothing here sees the client's data: only the update, the layer's weights and the data box.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .lowrank import SIGNAL, LowRank, low_rank, noise_floor

NULL_FACTOR = 2.0  # |L_i q| <= this x the noise floor (the spectral norm of the rounding error) is a zero
LIVE_FACTOR = 1e2  # rows of L with norm below this x the null tolerance carry no usable zero
MAX_DIRECTIONS = 4_096  # sparse proposals kept for the greedy selection (sparsest first)
PLAUSIBLE = 1e-9  # Gram screen: smallest / largest eigenvalue below this may hide a null direction
Z_MARGIN = 1e-7  # pre-activations within this relative margin of 0 count as neither side of the ReLU


@dataclass(frozen=True)
class Layer:
    """What the attacker knows of the attacked layer: weights, bias and the update's gradients."""

    weight: Tensor  # m x n, float64
    bias: Tensor  # m
    grad_weight: Tensor  # m x n: dL/dW as observed
    grad_bias: Tensor  # m: dL/db as observed
    lower: float | None = None  # inputs are >= lower (the data box or a preceding ReLU), if known
    upper: float | None = None


@dataclass
class Component:
    """One recovered sample: its input ``x`` and its column ``dz`` of ``dL/dZ``."""

    x: Tensor
    dz: Tensor
    source: str  # "ratio" or "sampling"
    support: int = 1  # units of the update whose ratio gave exactly this input


@dataclass
class Settings:
    trials: int = 32_768  # SPEAR sub-matrices drawn per sampling round (paper: 1e4 per GPU batch)
    chunk: int = 2_048  # sub-matrices per batched SVD
    max_sampling_rank: int = 14  # no sampling above this residual rank (success odds fall as ~2^-r)
    box_slack: float = 1e-4  # relative slack on the data box for a candidate input
    single_candidates: int = 4_096  # single-unit ratios tried per round (largest bias gradients first)


@dataclass
class Outcome:
    components: list[Component]
    rank: int  # rank of the observed weight gradient (samples the layer separates)
    noise: float  # noise floor of the observed weight gradient
    noise_frobenius: float = 0.0  # Frobenius norm of the discarded part of the spectrum
    rounds: list[str] = field(default_factory=list)  # what each round did, for the notes
    sampled: int = 0  # SPEAR sub-matrices drawn in all


@dataclass(frozen=True)
class Basis:
    """The update's row space (every input of the batch lies in it) and the layer seen from it."""

    vectors: Tensor  # n x r, orthonormal columns: x = vectors @ c
    weight: Tensor  # m x r: W @ vectors, so that z = weight @ c + bias
    bias: Tensor
    lower: float | None
    upper: float | None

    def inputs(self, coords: Tensor) -> Tensor:
        return coords @ self.vectors.T


def pre_activations(basis: Basis, coords: Tensor) -> tuple[Tensor, Tensor]:
    """``W x + b`` for inputs given by their coordinates, and the margin below which a value's
    side of the ReLU is unsure (rounding)."""
    z = coords @ basis.weight.T + basis.bias
    scale = coords.abs() @ basis.weight.abs().T + basis.bias.abs()
    return z, Z_MARGIN * scale


def _in_box(lower: float | None, upper: float | None, x: Tensor, slack: float) -> Tensor:
    lo = -torch.inf if lower is None else lower
    hi = torch.inf if upper is None else upper
    span = (hi - lo) if lower is not None and upper is not None else 1.0
    return ((x >= lo - slack * span) & (x <= hi + slack * span)).all(1)


def null_direction(rows: Tensor, *, tol: float) -> Tensor | None:
    """Unit ``q`` with ``rows @ q ~ 0`` when the rows' null space is exactly one-dimensional."""
    r = rows.shape[1]
    if rows.shape[0] < r - 1:
        return None
    # full_matrices only when there are fewer rows than unknowns (then vh needs its null rows)
    _, s, vh = torch.linalg.svd(rows, full_matrices=rows.shape[0] < r)
    smallest = float(s[r - 1]) if len(s) >= r else 0.0
    second = float(s[r - 2]) if r >= 2 else float("inf")
    if smallest > tol or second <= 10 * tol:
        return None
    return vh[r - 1]


def _clusters(candidates: Tensor) -> list[tuple[Tensor, int]]:
    """Identical candidates grouped (several single-sample units give the same input), most
    frequent first: a mixture of samples rarely repeats, a sample's own ratio does."""
    if len(candidates) == 0:
        return []
    scale = candidates.abs().amax(1, keepdim=True).clamp_min(1e-30)
    same = torch.cdist(candidates, candidates, p=float("inf")) <= 1e-6 * scale
    taken = torch.zeros(len(candidates), dtype=torch.bool)
    groups: list[tuple[Tensor, int]] = []
    for i in range(len(candidates)):
        if not taken[i]:
            members = same[i] & ~taken
            taken |= members
            groups.append((candidates[i], int(members.sum())))
    return sorted(groups, key=lambda g: -g[1])


def accept(basis: Basis, factors: LowRank, candidates: Tensor, *, tol: float, settings: Settings,
           source: str, min_support: int = 1, limit: int | None = None) -> list[Component]:
    """The candidates (coordinates) that are samples of the batch, each with its ``dz``.

    A candidate passes when (1) its input lies in the data box, (2) the rows of ``L`` on the
    units it leaves inactive have a one-dimensional null space ``q``, and (3) ``dz = L q`` is
    zero on exactly those units (the ReLU's pattern, both ways). A mixture of samples fails (3)
    wherever its pattern differs from the sample whose ``q`` it borrowed; at most one candidate
    is kept per ``q``, the most frequent.
    """
    if len(candidates) == 0:
        return []
    candidates = candidates[_in_box(basis.lower, basis.upper, basis.inputs(candidates), settings.box_slack)]
    clusters = [(c, n) for c, n in _clusters(candidates) if n >= min_support]
    if not clusters:
        return []
    live = factors.left.norm(dim=1) > LIVE_FACTOR * tol
    coords = torch.stack([c for c, _ in clusters])
    z, margin = pre_activations(basis, coords)
    inactive = (z < -margin) & live
    plausible = _plausible(factors.left, inactive)
    out: list[Component] = []
    directions: list[Tensor] = []
    for k, (c, support) in enumerate(clusters):
        if limit is not None and len(out) >= limit:
            break
        if not plausible[k]:
            continue
        q = null_direction(factors.left[inactive[k]], tol=tol)
        if q is None or any(float((q @ d).abs()) > 1 - 1e-9 for d in directions):
            continue
        local = factors.right @ c  # the candidate in the residual's factor coordinates
        denom = float(local @ q)
        if abs(denom) < 1e-12 * float(local.norm()):
            continue
        zero = (factors.left @ q).abs() <= tol
        decided = live & (z[k].abs() > margin[k])
        if bool((zero[decided] != (z[k][decided] < 0)).any()):
            continue  # the ReLU pattern of x and the zeros of dz disagree
        directions.append(q)
        out.append(Component(x=c.clone(), dz=factors.left @ q / denom, source=source, support=support))
    return out


def _plausible(left: Tensor, inactive: Tensor) -> Tensor:
    """Cheap batched screen for :func:`accept`'s condition (2): the rows of ``left`` on each
    candidate's inactive units (nearly) share a null direction. The Gram matrix's smallest
    eigenvalue squares the singular value, so rounding hides anything below ~1e-16 of the largest:
    it only screens, and the exact SVD test follows for the survivors."""
    m, r = left.shape
    outer = (left[:, :, None] * left[:, None, :]).reshape(m, r * r)
    gram = (inactive.to(left.dtype) @ outer).reshape(-1, r, r)
    eig = torch.linalg.eigvalsh(gram)
    return eig[:, 0] <= PLAUSIBLE * eig[:, -1].clamp_min(1e-300)


def ratio_candidates(grad_weight: Tensor, grad_bias: Tensor, *, tol: float) -> Tensor:
    """``dW_i / db_i`` of every unit whose bias gradient is clearly non-zero (largest first)."""
    order = torch.argsort(grad_bias.abs(), descending=True)
    order = order[grad_bias[order].abs() > tol]
    return grad_weight[order] / grad_bias[order, None]


def sample_directions(factors: LowRank, *, tol: float, settings: Settings,
                      generator: torch.Generator) -> tuple[Tensor, Tensor, int]:
    """SPEAR's proposal stage: unit null directions of random ``r-1``-row sub-matrices of ``L``
    that are sparser than forced, deduplicated; returns (directions, zero counts, drawn)."""
    left = factors.left
    r = factors.rank
    live = torch.nonzero(left.norm(dim=1) > LIVE_FACTOR * tol).flatten()
    rows = left[live]
    if r < 2 or len(live) < r:
        return torch.zeros(0, r, dtype=left.dtype), torch.zeros(0, dtype=torch.long), 0
    found: list[Tensor] = []
    zeros: list[Tensor] = []
    drawn = 0
    while drawn < settings.trials:
        n = min(settings.chunk, settings.trials - drawn)
        pick = torch.multinomial(torch.ones(n, len(live), dtype=torch.float64), r - 1, generator=generator)
        _, sv, vh = torch.linalg.svd(rows[pick], full_matrices=True)
        q = vh[:, -1, :]  # n x r
        count = ((rows @ q.T).abs() <= tol).sum(0)
        # at least two zeros beyond the r-1 forced ones, from a sub-matrix of full rank r-1 (rows
        # of one sample's single-sample units are parallel: their null space is wider than one)
        sparse = (count >= r + 1) & (sv[:, -1] > 1e-8 * sv[:, 0])
        found.append(q[sparse])
        zeros.append(count[sparse])
        drawn += n
    q = torch.cat(found)
    count = torch.cat(zeros)
    if len(q) == 0:
        return q, count, drawn
    order = torch.argsort(count, descending=True)[:MAX_DIRECTIONS]
    q, count = q[order], count[order]
    same = (q @ q.T).abs() > 1 - 1e-9
    keep = torch.ones(len(q), dtype=torch.bool)
    for i in range(len(q)):  # sparsest first: drop later copies of a kept direction
        if keep[i]:
            keep[i + 1:] &= ~same[i, i + 1:]
    return q[keep], count[keep], drawn


def solve_from_directions(factors: LowRank, residual_bias: Tensor, directions: Tensor, *, tol: float) -> Tensor | None:
    """Greedy selection of ``r`` independent directions (sparsest first), scales from the bias
    gradient, and the inputs' coordinates ``(Q diag(s))^{-1} R``; None if fewer than ``r``.

    A mixture of samples ``j`` and ``k`` is zero only where both are, so its zero set lies
    inside ``j``'s: a direction whose zeros are all zeros of an already chosen one is skipped.
    """
    r = factors.rank
    zero_sets = (factors.left @ directions.T).abs() <= tol  # m x k
    chosen: list[int] = []
    for i in range(len(directions)):
        if any(not bool((zero_sets[:, i] & ~zero_sets[:, j]).any()) for j in chosen):
            continue
        trial = directions[[*chosen, i]]
        if float(torch.linalg.svdvals(trial)[-1]) > 1e-6:
            chosen.append(i)
        if len(chosen) == r:
            break
    if len(chosen) < r:
        return None
    q = directions[chosen].T  # r x r, columns are directions
    scales = torch.linalg.lstsq(factors.left @ q, residual_bias[:, None]).solution[:, 0]
    if bool((scales.abs() < 1e-12 * scales.abs().max()).any()):
        return None
    return torch.linalg.solve(q * scales, factors.right)  # rows are the inputs' coordinates


def row_space(layer: Layer, *, batch: int) -> tuple[Basis, Tensor, Tensor, int]:
    """Orthonormal basis of the update's row space (rank chosen at the noise floor), the weight
    gradient in it (m x r), the noise floor and the rank. One QR and one small SVD: cheap even
    for wide inputs."""
    q, r = torch.linalg.qr(layer.grad_weight.T)  # dW^T = q r, q: n x k
    u, s, vh = torch.linalg.svd(r.T, full_matrices=False)  # dW = u s (q vh^T)^T
    noise = noise_floor(s, batch=batch)
    rank = min(batch, int((s > max(SIGNAL * noise, float(s[0]) * 1e-13)).sum())) if len(s) else 0
    vectors = q @ vh[:rank].T
    basis = Basis(vectors=vectors, weight=layer.weight @ vectors, bias=layer.bias, lower=layer.lower, upper=layer.upper)
    return basis, layer.grad_weight @ vectors, s, rank


def disaggregate(layer: Layer, *, batch: int, settings: Settings, generator: torch.Generator) -> Outcome:
    """Recover as many of the ``batch`` inputs of ``layer`` as the update pins down exactly."""
    basis, grad_w, spectrum, rank = row_space(layer, batch=batch)
    noise = noise_floor(spectrum, batch=batch)
    tol = NULL_FACTOR * max(noise, float(spectrum[0]) * 1e-15)
    outcome = Outcome(components=[], rank=rank, noise=noise,
                      noise_frobenius=float(spectrum[rank:].square().sum().sqrt()))
    grad_b = layer.grad_bias.clone()
    while len(outcome.components) < rank:
        factors = low_rank(grad_w, max_rank=rank - len(outcome.components), noise=noise)
        if factors.rank == 0:
            break
        ratios = ratio_candidates(grad_w, grad_b, tol=tol)
        # Inputs that two units agree on first: a mixture of samples never repeats exactly.
        found = accept(basis, factors, ratios, tol=tol, settings=settings, source="ratio", min_support=2)
        how = "repeated ratios"
        if not found:  # then the single-unit ratios, one at a time (a mixture may pass the tests)
            found = accept(basis, factors, ratios[:settings.single_candidates], tol=tol, settings=settings,
                           source="ratio", limit=1)
            how = "a single ratio"
        if not found and 2 <= factors.rank <= settings.max_sampling_rank and settings.trials > 0:
            directions, _, drawn = sample_directions(factors, tol=tol, settings=settings, generator=generator)
            outcome.sampled += drawn
            coords = solve_from_directions(factors, grad_b, directions, tol=tol) if len(directions) else None
            found = [] if coords is None else accept(basis, factors, coords, tol=tol, settings=settings,
                                                     source="sampling")
            how = f"SPEAR sampling ({drawn} sub-matrices, {len(directions)} sparse directions)"
        if not found:
            outcome.rounds.append(f"residual rank {factors.rank}: no sample found by {how}")
            break
        outcome.rounds.append(f"residual rank {factors.rank}: {len(found)} sample(s) by {how}")
        for c in found:
            grad_w = grad_w - torch.outer(c.dz, c.x)
            grad_b = grad_b - c.dz
        outcome.components.extend(found)
    if outcome.components and len(outcome.components) == rank:
        outcome.components = refine(layer.grad_bias, layer.grad_weight @ basis.vectors, outcome.components)
    for c in outcome.components:
        c.x = basis.inputs(c.x)
    return outcome


def refine(grad_bias: Tensor, grad_weight: Tensor, components: list[Component]) -> list[Component]:
    """Re-solve every input from the found ``dz`` directions jointly (SPEAR's last step; only
    valid once every sample is found, else the missing ones leak into the solve).

    Peeling fixes each ``dz_j``'s direction by its zero pattern, but its scale and ``x_j`` come
    from one candidate; a candidate that mixes in a little of another sample borrows the right
    direction with a wrong scale. Solving the scales from the bias gradient (``dZ s = db``) and
    then ``X = (dZ diag(s))^+ dW`` over all found samples together removes that error.
    """
    directions = torch.stack([c.dz / c.dz.norm() for c in components], dim=1)  # m x k
    scales = torch.linalg.lstsq(directions, grad_bias[:, None]).solution[:, 0]
    if bool((scales.abs() <= 1e-12 * scales.abs().max()).any()):
        return components
    dz = directions * scales
    x = torch.linalg.lstsq(dz, grad_weight).solution  # k x r (coordinates)
    return [Component(x=x[i], dz=dz[:, i], source=c.source, support=c.support) for i, c in enumerate(components)]
