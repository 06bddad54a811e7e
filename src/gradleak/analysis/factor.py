"""Dense Cholesky factorisation and solves: LAPACK through SciPy on CPU, torch elsewhere.

Why not torch on CPU: its MKL ``potrf`` runs at about half the speed of SciPy's OpenBLAS on
this project's (AMD) machines (n = 3072 float32: 0.27 s against 0.14 s on one thread, float64
0.47 s against 0.26 s), and ``torch.cholesky_solve`` copies the whole factor on every call
(18 ms against 2 ms for the two triangular solves at n = 3072). R-GAP's dense layers factor
once and then solve a few times during refinement, so both costs are on its critical path.
SciPy's BLAS gets the thread count torch has at the time of the call (threadpoolctl), so one
torch thread means one BLAS thread here too.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

_CONTROLLER: list = []  # one threadpoolctl controller, created on first use (after SciPy's BLAS is loaded)


def _blas_threads(n: int):
    """Limit SciPy's BLAS to ``n`` threads (no-op without threadpoolctl)."""
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - scikit-learn brings it
            _CONTROLLER.append(None)
        else:
            _CONTROLLER.append(ThreadpoolController())
    controller = _CONTROLLER[0]
    return nullcontext() if controller is None else controller.limit(limits=n, user_api="blas")


def _lapack(dtype: torch.dtype):
    from scipy.linalg import lapack

    return (lapack.spotrf, lapack.spotrs) if dtype == torch.float32 else (lapack.dpotrf, lapack.dpotrs)


class Cholesky:
    """``A = L L^T`` of a symmetric positive definite matrix; :meth:`solve` applies ``A^{-1}``."""

    def __init__(self, factor: torch.Tensor, *, scipy: bool) -> None:
        self.factor = factor  # lower triangle holds L (the upper one is undefined on the SciPy path)
        self.scipy = scipy

    @property
    def dtype(self) -> torch.dtype:
        return self.factor.dtype

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        """``A^{-1} b`` for a flat ``b``, in the factor's precision (``b`` is converted)."""
        rhs = b.reshape(-1, 1).to(self.factor.dtype)
        if not self.scipy:
            return torch.cholesky_solve(rhs, self.factor).reshape(-1)
        potrs = _lapack(self.factor.dtype)[1]
        with _blas_threads(torch.get_num_threads()):
            # the row-major lower factor is the column-major upper one: no copy of the factor
            x, info = potrs(self.factor.numpy().T, rhs.numpy(), lower=0)
        if info != 0:  # pragma: no cover - only on invalid arguments
            raise RuntimeError(f"LAPACK potrs failed (info={info})")
        return torch.from_numpy(x).reshape(-1)


def cholesky(a: torch.Tensor, *, overwrite: bool = False, lapack: bool | None = None) -> Cholesky | None:
    """The Cholesky factor of symmetric ``a``, or None when ``a`` is not (numerically) positive
    definite. ``overwrite``: ``a`` may be destroyed (saves a copy of an ``n x n`` matrix).
    ``lapack``: SciPy's LAPACK (None: wherever it applies, CPU float32/float64); False: torch's
    (what other devices get)."""
    usable = a.device.type == "cpu" and a.dtype in (torch.float32, torch.float64) and not a.requires_grad
    if lapack is None:
        lapack = usable
    if lapack:
        potrf = _lapack(a.dtype)[0]
        work = a.contiguous() if overwrite else a.clone(memory_format=torch.contiguous_format)
        with _blas_threads(torch.get_num_threads()):
            # a symmetric row-major matrix is its own column-major transpose: factor in place
            c, info = potrf(work.numpy().T, lower=0, overwrite_a=1, clean=0)
        return Cholesky(torch.from_numpy(c.T), scipy=True) if info == 0 else None
    factor, info = torch.linalg.cholesky_ex(a)
    return Cholesky(factor, scipy=False) if int(info) == 0 else None
