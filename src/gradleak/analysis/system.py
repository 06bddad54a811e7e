"""One layer's R-GAP system: weight constraints ``W x = z - b`` stacked on gradient constraints.

For a layer with input ``x`` and backward signal ``k = dL/dz`` the weight gradient is linear in
``x``: ``dL/dW = k x^T`` for a fully connected layer, and for a convolution each kernel entry's
gradient is ``sum_p k[o, p] x_pad[c, stride * p + offset]``. The public R-GAP code unrolls both
into dense matrices (about 1 GB and five minutes per CIFAR image on CNN6). Here the matrices
are never written down:

* fully connected: the gradient block's normal matrix is ``|k|^2 I`` in closed form;
* convolution: both maps are applied to batches of unit vectors with ``conv2d`` and
  ``unfold``, and their adjoints come from autograd, which yields the normal matrix
  ``A^T A`` (``n x n`` for ``n`` unknowns, ~100 MB for CNN6's largest layer) column block by
  column block.

The normal equations are solved by Cholesky with iterative refinement against the exact
(matrix-free) residual, which recovers the accuracy that squaring the condition number costs;
a rank-deficient system falls back to the Moore-Penrose (minimum-norm) solution, as in the
paper's Algorithm 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .chain import ChainLayer

CHUNK_ENTRIES = 2**24  # entries of one block of A applied to unit vectors (~128 MB in float64)
RANK_RTOL = 1e-11  # eigenvalues of A^T A below this fraction of the largest count as zero


def weight_map(layer: ChainLayer, x: torch.Tensor) -> torch.Tensor:
    """``W x`` without the bias, for a batch of flat inputs (N x n -> N x m)."""
    m = layer.module
    xs = x.reshape(x.shape[0], *layer.in_shape)
    if layer.is_conv:
        out = F.conv2d(xs, m.weight.to(x.dtype), None, m.stride, m.padding, m.dilation)
    else:
        out = F.linear(xs, m.weight.to(x.dtype))
    return out.reshape(x.shape[0], -1)


def gradient_map(layer: ChainLayer, k: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The weight gradient ``dL/dW`` that input ``x`` would produce with backward signal ``k``.

    ``k`` is the flat ``dL/dz`` of one sample; ``x`` a batch of flat inputs; the result is
    N x |W| in the layout of ``weight.reshape(-1)``.
    """
    m = layer.module
    if not layer.is_conv:
        return torch.einsum("o,ni->noi", k, x).reshape(x.shape[0], -1)
    xs = x.reshape(x.shape[0], *layer.in_shape)
    patches = F.unfold(xs, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)
    kmat = k.reshape(layer.out_channels, -1)
    return torch.einsum("op,nqp->noq", kmat, patches).reshape(x.shape[0], -1)


def adjoint_weight_map(layer: ChainLayer, signal: torch.Tensor) -> torch.Tensor:
    """``W^T s``: how a signal on the layer's output reaches its input (one flat sample)."""
    x = torch.zeros((1, layer.in_size), dtype=signal.dtype, device=signal.device, requires_grad=True)
    (g,) = torch.autograd.grad(weight_map(layer, x), x, grad_outputs=signal.reshape(1, -1))
    return g.reshape(-1)


def _normal_block(apply, n: int, rows: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``A^T A`` (n x n) for a linear map given only as a batched function, block by block."""
    gram = torch.empty((n, n), dtype=dtype, device=device)
    step = max(1, min(n, CHUNK_ENTRIES // max(rows, 1)))
    for start in range(0, n, step):
        stop = min(n, start + step)
        basis = torch.zeros((stop - start, n), dtype=dtype, device=device)
        basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
        basis.requires_grad_(True)
        out = apply(basis)
        (cols,) = torch.autograd.grad(out, basis, grad_outputs=out.detach())
        gram[start:stop] = cols  # symmetric: rows = columns
    return gram


def _adjoint(apply, n: int, target: torch.Tensor) -> torch.Tensor:
    x = torch.zeros((1, n), dtype=target.dtype, device=target.device, requires_grad=True)
    (g,) = torch.autograd.grad(apply(x), x, grad_outputs=target.reshape(1, -1))
    return g.reshape(-1)


@dataclass
class LayerSystem:
    """Normal equations of one layer's stacked system (gradient block weighted by ``scale``)."""

    gram: torch.Tensor
    rhs: torch.Tensor
    scale: float  # weight of the gradient rows, balancing them against the weight rows
    rows: int  # constraints: |z| weight rows + |W| gradient rows

    @classmethod
    def build(cls, layer: ChainLayer, *, k: torch.Tensor, z: torch.Tensor | None, grad: torch.Tensor) -> "LayerSystem":
        """``z`` is the bias-free pre-activation (None: use the gradient rows only)."""
        n, dtype, device = layer.in_size, k.dtype, k.device
        grad_rows = lambda x: gradient_map(layer, k, x)  # noqa: E731
        if layer.is_conv:
            gram_k = _normal_block(grad_rows, n, grad.numel(), dtype, device)
        else:
            gram_k = torch.eye(n, dtype=dtype, device=device) * float(k @ k)
        rhs_k = _adjoint(grad_rows, n, grad.reshape(-1))
        rows = grad.numel()
        if z is None:
            return cls(gram_k, rhs_k, 1.0, rows)
        w_rows = lambda x: weight_map(layer, x)  # noqa: E731
        if layer.is_conv:
            gram_w = _normal_block(w_rows, n, layer.out_size, dtype, device)
        else:
            w = layer.module.weight.to(dtype)
            gram_w = w.T @ w
        rhs_w = _adjoint(w_rows, n, z.reshape(-1))
        tk, tw = float(gram_k.diagonal().sum()), float(gram_w.diagonal().sum())
        scale = tw / tk if tk > 0 else 1.0
        return cls(gram_w + scale * gram_k, rhs_w + scale * rhs_k, scale, rows + layer.out_size)

    def rank(self) -> tuple[int, float]:
        """Numerical rank of the stacked system and its smallest relative singular value."""
        eig = torch.linalg.eigvalsh(self.gram).clamp(min=0)
        top = float(eig[-1])
        if top == 0:
            return 0, 0.0
        return int((eig > RANK_RTOL * top).sum()), float((eig[0] / top).sqrt())


@dataclass(frozen=True)
class Solution:
    x: torch.Tensor
    full_rank: bool
    residual: float  # ||A x - b|| / ||b|| of the weighted system


def solve_layer(
    layer: ChainLayer, *, k: torch.Tensor, z: torch.Tensor | None, grad: torch.Tensor, refine: int = 2
) -> Solution:
    """Least-squares input of ``layer`` (minimum norm when the system is rank deficient)."""
    system = LayerSystem.build(layer, k=k, z=z, grad=grad)
    chol, info = torch.linalg.cholesky_ex(system.gram)
    diag = chol.diagonal()
    full = int(info) == 0 and float((diag.min() / diag.max()) ** 2) > RANK_RTOL
    if full:
        solve = lambda r: torch.cholesky_solve(r.reshape(-1, 1), chol).reshape(-1)  # noqa: E731
    else:
        eig, vec = torch.linalg.eigh(system.gram)
        keep = eig > RANK_RTOL * eig[-1].clamp(min=0)
        inv = torch.where(keep, 1.0 / eig.where(keep, torch.ones_like(eig)), torch.zeros_like(eig))
        solve = lambda r: vec @ (inv * (vec.T @ r))  # noqa: E731
    x = solve(system.rhs)

    def residual_terms(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact normal-equation residual ``A^T (b - A x)`` and ``||A x - b|| / ||b||``."""
        xb = x.reshape(1, -1).detach().requires_grad_(True)
        parts = [(gradient_map(layer, k, xb), grad.reshape(1, -1), system.scale ** 0.5)]
        if z is not None:
            parts.append((weight_map(layer, xb), z.reshape(1, -1), 1.0))
        diffs = [(t - out) * w for out, t, w in parts]
        outs = [out * w for out, _t, w in parts]
        (g,) = torch.autograd.grad(outs, xb, grad_outputs=[d.detach() for d in diffs])
        norm_b = sum(float(((t * w) ** 2).sum()) for _o, t, w in parts) ** 0.5
        norm_r = sum(float((d ** 2).sum()) for d in diffs) ** 0.5
        return g.reshape(-1), torch.tensor(norm_r / max(norm_b, 1e-300))

    for _ in range(refine if full else 0):
        correction, _ = residual_terms(x)
        x = x + solve(correction)
    _, res = residual_terms(x)
    return Solution(x.detach(), full, float(res))
