"""One layer's R-GAP system, ``[W; K] x = [z - b; dL/dW]``, solved without its dense matrix.

The least-squares input is the solution of the normal equations
``(W^T W + s K^T K) x = W^T z + s K^T dL/dW`` (``s`` balances the two blocks' traces; the
solution of a consistent system does not depend on it). They are solved by conjugate
gradients on the matrix-free operator of :mod:`.operators`, preconditioned by the
channel-diagonal blocks ``(W^T W)_cc + s G`` (one small Cholesky factor per input channel,
because ``K^T K = I_C (x) G`` is exactly channel diagonal). Well-conditioned layers converge in
tens of iterations; when CG stalls (an ill-conditioned or rank-deficient layer) the dense
``n x n`` normal matrix is assembled from its small factors (:mod:`.assembly`) and factored
(:mod:`.factor`): in float32 refined against the float64 residual where conditioning allows,
else a float64 Cholesky with a certificate of full rank, else the Moore-Penrose (minimum-norm)
solution of Algorithm 1 (exact by eigen-decomposition for small layers; for large ones the
Tikhonov solution with shift ``1e-10 |N|``, which equals it up to ~shift / sigma^2 at the cost
of one more Cholesky).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .assembly import weight_channel_blocks
from .chain import ChainLayer
from .factor import cholesky
from .operators import LayerMaps

RANK_RTOL = 1e-10  # eigenvalues of the normal matrix below this fraction of the largest are zero
EXACT_PINV_MAX = 1000  # rank-deficient layers up to this size get the exact pseudo-inverse (eigh), larger ones Tikhonov


@dataclass(frozen=True)
class SolveSettings:
    """How hard the iterative solver tries before the dense fallback."""

    tol: float = 1e-13  # relative residual of the normal equations at which CG stops
    max_iter: int = 300  # CG iterations before falling back to the dense factorisation
    method: str = "auto"  # "auto": CG when the flop model says it is cheaper; "cg": always try CG first; "dense"


@dataclass(frozen=True)
class Solution:
    """A layer's least-squares input and how it was found."""

    x: torch.Tensor  # flat input of the layer
    residual: float  # ||A x - b|| / ||b|| of the (balanced) stacked system
    method: str  # "cg", "cholesky32+refine" (float32 factor, float64 refinement), "cholesky" or "pinv"
    iterations: int  # CG iterations (0 for a direct solve)
    full_rank: bool | None  # None when CG converged (no rank test was needed)


_OUTER_THREADS: list[int] = []  # thread counts saved by nested small_ops(): dense factorisations use them


@contextmanager
def small_ops():
    """One thread for the many tiny ops of R-GAP (threads only add synchronisation, which is
    severe on a shared machine); :func:`dense_ops` restores the outer count inside it."""
    before = torch.get_num_threads()
    _OUTER_THREADS.append(before)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        _OUTER_THREADS.pop()
        torch.set_num_threads(before)


@contextmanager
def dense_ops():
    """All the caller's threads for a dense factorisation (BLAS-3 work that scales)."""
    before = torch.get_num_threads()
    torch.set_num_threads(_OUTER_THREADS[0] if _OUTER_THREADS else before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cg(matvec, b: torch.Tensor, precond, *, tol: float, max_iter: int, budget: float) -> tuple[torch.Tensor, int, float]:
    """Preconditioned conjugate gradients from zero; returns x, iterations, relative residual.

    Gives up early (returning the residual reached) when the observed convergence rate says
    that reaching ``tol`` would take more than ``budget`` iterations.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    bnorm = float(b.norm())
    if bnorm == 0:
        return x, 0, 0.0
    z = precond(r)
    p = z.clone()
    rz = float(torch.dot(r, z))
    rel = 1.0
    for it in range(1, max_iter + 1):  # in place, scalars as Python floats: no allocations besides the operators'
        ap = matvec(p)
        alpha = rz / float(torch.dot(p, ap))
        if not math.isfinite(alpha):
            return x, it, rel
        x.add_(p, alpha=alpha)
        r.sub_(ap, alpha=alpha)
        rel = float(r.norm()) / bnorm
        if rel <= tol:
            return x, it, rel
        if it % 10 == 0 and it >= 20:  # predicted iterations from the average rate so far
            rate = rel ** (1.0 / it)
            if rate >= 1.0 or math.log(tol) / math.log(rate) > budget:
                return x, it, rel
        z = precond(r)
        rz_new = float(torch.dot(r, z))
        p.mul_(rz_new / rz).add_(z)
        rz = rz_new
    return x, max_iter, rel


class LayerSystem:
    """Normal equations of one layer's stacked weight and gradient constraints."""

    def __init__(self, layer: ChainLayer, *, k: torch.Tensor, z: torch.Tensor | None, grad: torch.Tensor) -> None:
        """``k = dL/dz`` (flat), ``z`` the bias-free pre-activation (None: gradient rows only)."""
        self.layer, self.maps = layer, LayerMaps(layer, k)
        self.z, self.grad = z, grad.reshape(-1).to(k.dtype)
        tw, tk = self.maps.traces()
        self.weight_on = z is not None
        self.scale = (tw / tk if tk > 0 else 1.0) if self.weight_on else 1.0
        rhs = self.scale * self.maps.gradient_adjoint(self.grad.reshape(1, -1))
        if self.weight_on:
            rhs = rhs + self.maps.weight_adjoint(z.reshape(1, -1))
        self.rhs = rhs.reshape(-1)
        eps = torch.finfo(k.dtype).eps
        self.rank_rtol = max(RANK_RTOL, 100 * eps)  # float32 cannot resolve eigenvalues below ~1e-5
        self.min_tol = 50 * eps  # CG cannot get below this

    # ------------------------------------------------------------------ operators
    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``N v`` with ``N = W^T W + s K^T K`` (matrix-free, factored: never forms ``w^T w``)."""
        geo, maps = self.maps.geo, self.maps
        u = geo.unfold(v.reshape(1, -1))  # 1 x Ckk x P
        out = self.scale * ((u @ maps.k.T) @ maps.k)
        if self.weight_on:
            out = out + maps.w.T @ (maps.w @ u)
        return geo.fold(out).reshape(-1)

    def dense(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The ``n x n`` normal matrix, assembled from its small factors (in ``dtype``)."""
        dtype = dtype or self.rhs.dtype
        if self.weight_on:
            return self.maps.normal_matrix(self.scale, dtype)
        n, g = self.maps.geo.n, self.maps.gradient_pixel_normal(dtype)
        c = self.maps.geo.in_shape[0]
        return torch.kron(torch.eye(c, dtype=g.dtype, device=g.device), g * self.scale).reshape(n, n)

    def _preconditioner(self):
        """Apply the inverse of the channel-diagonal blocks ``(W^T W)_cc + s G`` (exact on K^T K).

        Two batched triangular solves per iteration: ``torch.cholesky_solve`` copies every
        factor on each call, and a batched product with explicit inverses is slower still on
        CPU (12 blocks of 289 pixels: 0.35 / 1.3 ms against 0.2 ms).
        """
        geo, maps = self.maps.geo, self.maps
        c, pixels = geo.in_shape[0], geo.in_shape[1] * geo.in_shape[2]
        blocks = (self.scale * maps.gradient_pixel_normal()).expand(c, pixels, pixels).clone()
        if self.weight_on:
            blocks += weight_channel_blocks(geo, maps.w, blocks.dtype)
        diag = blocks.diagonal(dim1=1, dim2=2)
        diag += 1e-12 * diag.mean().clamp(min=1e-300)  # keep empty pixels (never read) invertible
        # A preconditioner only has to be close to the matrix: float32 halves the factorisation and
        # the per-iteration triangular solves; CG itself keeps the solve's precision.
        low = torch.float32 if blocks.dtype == torch.float64 else blocks.dtype
        chol, info = torch.linalg.cholesky_ex(blocks.to(low))
        if bool((info != 0).any()) and low != blocks.dtype:  # too ill-conditioned for float32
            low = blocks.dtype
            chol, info = torch.linalg.cholesky_ex(blocks)
        if bool((info != 0).any()):  # a singular block: fall back to the diagonal
            inv = 1.0 / diag.reshape(-1)
            return lambda r: r * inv
        upper = chol.mT.contiguous()

        def apply(r: torch.Tensor) -> torch.Tensor:
            y = torch.linalg.solve_triangular(chol, r.reshape(c, pixels, 1).to(low), upper=False)
            return torch.linalg.solve_triangular(upper, y, upper=True).reshape(-1).to(r.dtype)

        return apply

    # ------------------------------------------------------------------- results
    def residual(self, x: torch.Tensor) -> float:
        """``||A x - b|| / ||b||`` of the balanced stacked system (exact, matrix-free)."""
        maps, xb = self.maps, x.reshape(1, -1)
        d2 = self.scale * float(((maps.gradient_rows(xb) - self.grad) ** 2).sum())
        b2 = self.scale * float((self.grad ** 2).sum())
        if self.weight_on:
            d2 += float(((maps.weight_rows(xb) - self.z.reshape(1, -1)) ** 2).sum())
            b2 += float((self.z ** 2).sum())
        return (d2 / max(b2, 1e-300)) ** 0.5

    def top_eigenvalue(self, iterations: int = 30) -> float:
        """Largest eigenvalue of the normal matrix by (matrix-free) power iteration, +5 %."""
        v = torch.randn(self.rhs.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        v = v.to(self.rhs.device, self.rhs.dtype)
        v, lam = v / v.norm(), 0.0
        with small_ops():
            for _ in range(iterations):
                w = self.matvec(v)
                lam = float(w.norm())
                if lam == 0:
                    return 0.0
                v = w / lam
        return 1.05 * lam

    def rank(self, *, rtol: float | None = None) -> tuple[int, float]:
        """Numerical rank of the stacked system and its smallest relative singular value.

        A Cholesky factorisation of ``N - rtol * |N| I`` certifies full rank cheaply; only when
        it fails are the eigenvalues computed.
        """
        rtol = self.rank_rtol if rtol is None else rtol
        n_mat = self.dense()
        n = n_mat.shape[0]
        top = self.top_eigenvalue()
        if top == 0:
            return 0, 0.0
        shifted = n_mat.clone()
        shifted.diagonal().sub_(rtol * top)
        with dense_ops():
            chol = cholesky(shifted, overwrite=True)
        if chol is not None:
            return n, float((chol.factor.diagonal().min() ** 2 / top) ** 0.5)  # a bound, not the exact minimum
        with dense_ops():
            eig = torch.linalg.eigvalsh(n_mat).clamp(min=0)
        return int((eig > rtol * top).sum()), float((eig[0] / top) ** 0.5)

    def iteration_cost(self) -> float:
        """Flop-model cost of one CG iteration, in units where the dense solve costs n^3/3.

        Triangular solves (the preconditioner) run ~10x below the factorisation's flop rate,
        and each iteration pays ~1 Mflop-equivalent of per-op overhead.
        """
        geo = self.maps.geo
        ckk, p, o = geo.patch_size, geo.positions, geo.out_shape[0]
        pixels = geo.in_shape[1] * geo.in_shape[2]
        return 8.0 * o * ckk * p + 40.0 * geo.in_shape[0] * pixels * pixels + 1e6

    def solve(self, settings: SolveSettings = SolveSettings()) -> Solution:
        """Least-squares input: CG when it is cheaper, else the dense factorisation."""
        n, tol = self.maps.geo.n, max(settings.tol, self.min_tol)
        budget = min(settings.max_iter, (n ** 3 / 3.0) / self.iteration_cost())
        if settings.method == "cg":
            budget = settings.max_iter
        # CG rarely reaches 1e-13 in < 100 iterations on an ill-conditioned layer; a looser
        # tolerance (float32) needs proportionally fewer
        if settings.method == "cg" or (settings.method == "auto" and budget >= 100 * math.log(tol) / math.log(1e-13)):
            with small_ops():
                x, its, rel = _cg(self.matvec, self.rhs, self._preconditioner(), tol=tol,
                                  max_iter=settings.max_iter, budget=budget)
            if rel <= tol:
                return Solution(x, self.residual(x), "cg", its, None)
        return self._solve_dense()

    def _refined_float32(self, *, steps: int = 12) -> Solution | None:
        """Mixed precision: a float32 Cholesky (half the flops' time) refined against the exact
        float64 residual, where conditioning allows; None (use float64) where it does not.

        The float32 matrix is assembled in float32 directly, without the float64 path's shift
        of ``1e-10 |N|`` (below float32's resolution anyway). Iterative refinement converges when
        cond(N) * eps32 < 1; each step then gains about -log10(cond * eps32) digits. The
        answer is kept only if refinement reaches the residual the float64 factorisation
        reaches (its three steps' floor), else None; converging that far also certifies full
        rank far above the float64 path's ``1e-10`` threshold.
        """
        try:
            n_mat = self.dense(torch.float32)
        except RuntimeError:  # a term beyond float32's range (e.g. a noised update's huge entries): float64 then
            return None
        if not bool(torch.isfinite(n_mat).all()):
            return None
        with dense_ops():
            chol = cholesky(n_mat, overwrite=True)
        if chol is None:
            return None
        solve = lambda r: chol.solve(r).to(self.rhs.dtype)  # noqa: E731
        x = solve(self.rhs)
        bnorm = float(self.rhs.norm()) or 1.0
        previous = math.inf
        for _ in range(steps):
            r = self.rhs - self.matvec(x)
            rel = float(r.norm()) / bnorm
            if rel <= self.min_tol:
                break
            if rel > 0.5 * previous:  # stalled or diverging: float32 is not enough here
                return None if rel > 1e3 * self.min_tol else Solution(x, self.residual(x), "cholesky32+refine", 0, True)
            previous = rel
            x = x + solve(r)
        return Solution(x, self.residual(x), "cholesky32+refine", 0, True)

    def _solve_dense(self) -> Solution:
        """Cholesky of ``N - rtol |N| I`` (its success certifies full rank), refined against
        the exact residual; the eigen-decomposition (pseudo-inverse) only when it fails."""
        if self.rhs.dtype == torch.float64:
            refined = self._refined_float32()
            if refined is not None:
                return refined
        n_mat = self.dense()
        n = n_mat.shape[0]
        top = self.top_eigenvalue()
        shifted = n_mat.clone()
        shifted.diagonal().sub_(self.rank_rtol * top)
        with dense_ops():
            chol = cholesky(shifted, overwrite=True)
        if chol is not None:
            x = chol.solve(self.rhs)
            for _ in range(3):  # the shift is tiny: each step gains ~10 digits
                x = x + chol.solve(self.rhs - self.matvec(x))
            return Solution(x, self.residual(x), "cholesky", 0, True)
        if n > EXACT_PINV_MAX:  # Tikhonov: the minimum-norm solution up to ~shift / sigma^2, at Cholesky cost
            n_mat.diagonal().add_(self.rank_rtol * top)
            with dense_ops():
                chol = cholesky(n_mat, overwrite=True)
            if chol is None:
                raise torch.linalg.LinAlgError("the Tikhonov-shifted normal matrix is not positive definite")
            x = chol.solve(self.rhs)
            return Solution(x, self.residual(x), "pinv", 0, False)
        with dense_ops():
            eig, vec = torch.linalg.eigh(n_mat)
        keep = eig > self.rank_rtol * top
        inv = torch.where(keep, 1.0 / eig.where(keep, torch.ones_like(eig)), torch.zeros_like(eig))
        x = vec @ (inv * (vec.T @ self.rhs))
        return Solution(x, self.residual(x), "pinv", 0, bool(keep.all()))
