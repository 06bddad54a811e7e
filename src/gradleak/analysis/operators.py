"""One layer's two linear maps of the input, without writing their matrices down.

R-GAP treats every layer as ``z = W x`` (weight constraints) and ``dL/dW = K x`` (gradient
constraints, ``K`` built from the backward signal ``k = dL/dz``). Both are linear in ``x`` and
both read ``x`` only through its patches ``U = unfold(x)`` (``C*kh*kw x P``; a fully connected
layer is the 1x1 convolution of an ``n x 1 x 1`` image, ``P = 1``):

* ``W x = w U``            (``w``: the ``O x C*kh*kw`` weight matrix)
* ``K x = k U^T``          (``k``: the ``O x P`` backward signal)

so their normal matrices factor into two small matrices and the fold/unfold pattern:

* ``W^T W x = fold(Q U)`` with ``Q = w^T w``  (``C*kh*kw`` square)
* ``K^T K x = fold(U M)`` with ``M = k^T k``  (``P`` square); ``K^T K = I_C (x) G`` is block
  diagonal over input channels with one ``G`` (pixels x pixels) shared by all of them.

The public R-GAP code instead builds ``K`` densely (``|W| x |x|``: 74k x 3.1k entries for
CNN6's last convolution, ~1 GB). Padded entries are not unknowns here (they are known zeros),
which is equivalent to the paper's padding constraints.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .chain import ChainLayer


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


@dataclass(frozen=True)
class Geometry:
    """A Linear or Conv2d layer as a convolution: shapes, kernel and the weight as a matrix."""

    in_shape: tuple[int, int, int]  # (C, H, W); (n, 1, 1) for a fully connected layer
    out_shape: tuple[int, int, int]  # (O, Ho, Wo); (m, 1, 1) for a fully connected layer
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]

    @classmethod
    def of(cls, layer: ChainLayer) -> "Geometry":
        m = layer.module
        if isinstance(m, nn.Conv2d):
            c, h, w = layer.in_shape
            o, ho, wo = layer.out_shape
            return cls((c, h, w), (o, ho, wo), _pair(m.kernel_size), _pair(m.stride), _pair(m.padding), _pair(m.dilation))
        return cls((m.in_features, 1, 1), (m.out_features, 1, 1), (1, 1), (1, 1), (0, 0), (1, 1))

    @property
    def n(self) -> int:
        """Unknowns: entries of one input."""
        c, h, w = self.in_shape
        return c * h * w

    @property
    def positions(self) -> int:
        """P: output positions of one output channel."""
        return self.out_shape[1] * self.out_shape[2]

    @property
    def patch_size(self) -> int:
        """C*kh*kw: entries of one patch (one weight row)."""
        return self.in_shape[0] * self.kernel[0] * self.kernel[1]

    @property
    def padded(self) -> bool:
        return self.padding != (0, 0)

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """Patches of a batch of flat inputs: ``B x n -> B x C*kh*kw x P``."""
        xs = x.reshape(x.shape[0], *self.in_shape)
        return F.unfold(xs, self.kernel, dilation=self.dilation, padding=self.padding, stride=self.stride)

    def fold(self, u: torch.Tensor) -> torch.Tensor:
        """Adjoint of :meth:`unfold` (sums overlapping patches, drops padding): ``-> B x n``."""
        out = F.fold(u, self.in_shape[1:], self.kernel, dilation=self.dilation, padding=self.padding, stride=self.stride)
        return out.reshape(u.shape[0], -1)

    def patch_index(self, device: torch.device | None = None) -> torch.Tensor:
        """Flat input index read by each patch entry (``C*kh*kw x P``); ``n`` marks padding.
        Cached per geometry and device: do not modify the result."""
        return _patch_index(self, torch.device("cpu") if device is None else torch.device(device))


@lru_cache(maxsize=64)
def _patch_index(geo: Geometry, device: torch.device) -> torch.Tensor:
    ids = torch.arange(1, geo.n + 1, dtype=torch.float64, device=device).reshape(1, -1)
    idx = geo.unfold(ids)[0].round().long() - 1  # exact: float64 holds these integers
    return torch.where(idx < 0, torch.full_like(idx, geo.n), idx)


def weight_matrix(layer: ChainLayer, dtype: torch.dtype) -> torch.Tensor:
    """The weight as ``O x C*kh*kw`` (rows are output channels)."""
    w = layer.module.weight.detach().to(dtype)
    return w.reshape(w.shape[0], -1)


class LayerMaps:
    """``W``, ``K`` and their adjoints for one layer and one backward signal ``k``."""

    def __init__(self, layer: ChainLayer, k: torch.Tensor) -> None:
        self.layer = layer
        self.geo = Geometry.of(layer)
        self.w = weight_matrix(layer, k.dtype).to(k.device)  # O x Ckk
        self.k = k.reshape(self.geo.out_shape[0], self.geo.positions)  # O x P

    def bias_vector(self) -> torch.Tensor | float:
        """The bias repeated over output positions (flat, like ``W x``), or 0."""
        b = self.layer.module.bias
        return 0.0 if b is None else b.detach().to(self.w.dtype).repeat_interleave(self.geo.positions)

    # ---------------------------------------------------------------- the two maps
    def weight_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``W x`` (bias excluded) for a batch of flat inputs: ``B x |z|``."""
        return (self.w @ self.geo.unfold(x)).reshape(x.shape[0], -1)

    def gradient_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``K x``: the weight gradient input ``x`` would give, ``B x |W|`` (weight layout)."""
        return (self.k @ self.geo.unfold(x).transpose(1, 2)).reshape(x.shape[0], -1)

    def weight_adjoint(self, z: torch.Tensor) -> torch.Tensor:
        """``W^T z`` for a batch of flat outputs."""
        return self.geo.fold(self.w.T @ z.reshape(z.shape[0], self.w.shape[0], -1))

    def gradient_adjoint(self, g: torch.Tensor) -> torch.Tensor:
        """``K^T g`` for a batch of flat weight gradients."""
        gm = g.reshape(g.shape[0], self.w.shape[0], -1)  # B x O x Ckk
        return self.geo.fold(gm.transpose(1, 2) @ self.k)

    # ------------------------------------------------------------ normal matrices
    def weight_normal(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``W^T W`` (n x n), assembled from ``Q = w^T w`` (:mod:`.assembly`)."""
        from .assembly import normal_matrix

        return normal_matrix(self.geo, self.w, dtype=dtype or self.w.dtype)

    def gradient_pixel_normal(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``G`` (pixels x pixels): the block of ``K^T K`` shared by every input channel."""
        from .assembly import gradient_pixel_normal

        return gradient_pixel_normal(self.geo, self.k, dtype or self.k.dtype)

    def normal_matrix(self, scale: float, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``W^T W + scale * K^T K`` (n x n): the stacked system's normal matrix, in ``dtype``."""
        from .assembly import normal_matrix

        dtype = dtype or self.w.dtype
        return normal_matrix(self.geo, self.w, g=self.gradient_pixel_normal(dtype), scale=scale, dtype=dtype)

    def traces(self) -> tuple[float, float]:
        """``tr(W^T W)`` and ``tr(K^T K)`` without forming either (for balancing the rows)."""
        geo = self.geo
        ones = torch.ones((1, geo.n), dtype=self.w.dtype, device=self.w.device)
        reads = geo.unfold(ones)[0]  # Ckk x P: 1 where a patch entry reads a real pixel
        tw = float(((self.w * self.w).sum(0) @ reads).sum())
        tk = float(((self.k * self.k).sum(0) * reads).sum())
        return tw, tk
