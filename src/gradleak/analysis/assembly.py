"""Dense normal matrices of a layer system, assembled from their small factors (see :mod:`.operators`).

``W^T W`` sums ``Q = w^T w`` (``C*kk`` square) over the output positions, and ``K^T K = I_C (x) G``
sums ``M = k^T k`` (``P`` square) over the kernel offsets. Which pixel pairs each sum touches
depends on the geometry only, so those indices are computed once per geometry and cached
(R-GAP meets the same layers for every reading and every image). ``W^T W`` is assembled one
of two ways, whichever moves less memory:

* scatter: every ``(c, c')`` entry of ``Q`` goes straight to its place in the ``n x n`` matrix
  (``nnz * C^2`` scattered entries): few channels on many pixels (CNN6's first layer);
* sparse product: a (pixel pair x offset pair) count matrix times ``Q`` laid out as
  ``kk^2 x C^2``, then one permuting copy: many channels on few pixels (64 channels on 5x5
  pixels: 0.14 s by scatter, 0.01 s this way).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from .operators import Geometry


@dataclass(frozen=True)
class PixelPairs:
    """The pixel pairs of one geometry's two sums (channel 0; padding dropped)."""

    pixels: int  # H * W of the input
    weight_pairs: torch.Tensor  # i * pixels + j for each (position, offset a, offset b) reading pixels i, j
    offset_pairs: torch.Tensor  # a * kk + b for the same entries
    gradient_pairs: torch.Tensor  # i * pixels + j for each (offset, position p, position p') reading pixels i, j
    position_pairs: torch.Tensor  # p * P + p' for the same entries


@lru_cache(maxsize=32)
def pixel_pairs(geo: Geometry, device: torch.device) -> PixelPairs:
    """Index tensors of :class:`PixelPairs` (cached: they depend on the geometry only)."""
    kk, positions = geo.kernel[0] * geo.kernel[1], geo.positions
    pixels = geo.in_shape[1] * geo.in_shape[2]
    idx = geo.patch_index(device)[:kk]  # kk x P, n marks padding
    real = idx < pixels
    # W^T W: offsets a, b at one position p
    same_p = (real.T.unsqueeze(2) & real.T.unsqueeze(1)).reshape(-1)  # P x kk x kk
    wp = (idx.T.unsqueeze(2) * pixels + idx.T.unsqueeze(1)).reshape(-1)[same_p]
    ab = torch.arange(kk * kk, device=device).repeat(positions)[same_p]
    # K^T K: positions p, p' at one offset a
    same_a = (real.unsqueeze(2) & real.unsqueeze(1)).reshape(-1)  # kk x P x P
    gp = (idx.unsqueeze(2) * pixels + idx.unsqueeze(1)).reshape(-1)[same_a]
    pp = torch.arange(positions * positions, device=device).repeat(kk)[same_a]
    return PixelPairs(pixels, wp, ab, gp, pp)


@lru_cache(maxsize=32)
def _scatter_index(geo: Geometry, device: torch.device) -> torch.Tensor:
    """Flat ``n x n`` index of every ``(c, c', weight pair)``: ``C x C x nnz``."""
    pairs, (c, pixels, n) = pixel_pairs(geo, device), (geo.in_shape[0], geo.in_shape[1] * geo.in_shape[2], geo.n)
    i, j = pairs.weight_pairs // pixels, pairs.weight_pairs % pixels
    base = (i * n + j).unsqueeze(0).unsqueeze(0)
    ch = torch.arange(c, device=device) * pixels
    return (ch.reshape(c, 1, 1) * n + ch.reshape(1, c, 1) + base).reshape(-1)


@lru_cache(maxsize=32)
def _count_matrix(geo: Geometry, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sparse (pixel pairs x offset pairs) matrix: how many positions read each pixel pair at each offset pair."""
    pairs = pixel_pairs(geo, device)
    kk = geo.kernel[0] * geo.kernel[1]
    values = torch.ones(pairs.weight_pairs.numel(), dtype=dtype, device=device)
    indices = torch.stack([pairs.weight_pairs, pairs.offset_pairs])
    return torch.sparse_coo_tensor(indices, values, (pairs.pixels ** 2, kk * kk), check_invariants=False).coalesce()


def fully_connected(geo: Geometry) -> bool:
    """One position and no padding: the patch is the whole input and ``W^T W = Q``."""
    return geo.positions == 1 and not geo.padded and geo.kernel == geo.in_shape[1:]


def gradient_pixel_normal(geo: Geometry, k: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``G`` (pixels x pixels): the block of ``K^T K`` shared by every input channel; ``k`` is ``O x P``."""
    pairs = pixel_pairs(geo, k.device)
    kd = k.to(dtype)
    m = (kd.T @ kd).reshape(-1)
    out = torch.zeros(pairs.pixels * pairs.pixels, dtype=dtype, device=k.device)
    out.index_add_(0, pairs.gradient_pairs, m[pairs.position_pairs])
    return out.reshape(pairs.pixels, pairs.pixels)


def weight_channel_blocks(geo: Geometry, w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The channel-diagonal blocks of ``W^T W`` (``C x pixels x pixels``) without forming it."""
    pairs = pixel_pairs(geo, w.device)
    c, kk = geo.in_shape[0], geo.kernel[0] * geo.kernel[1]
    w3 = w.to(dtype).reshape(w.shape[0], c, kk)
    q = torch.einsum("oca,ocb->cab", w3, w3).reshape(c, kk * kk)
    out = torch.zeros((c, pairs.pixels * pairs.pixels), dtype=dtype, device=w.device)
    out.index_add_(1, pairs.weight_pairs, q[:, pairs.offset_pairs])
    return out.reshape(c, pairs.pixels, pairs.pixels)


def normal_matrix(geo: Geometry, w: torch.Tensor, *, g: torch.Tensor | None = None, scale: float = 0.0,
                  dtype: torch.dtype, path: str = "auto") -> torch.Tensor:
    """``W^T W + scale * (I_C (x) g)`` (``n x n``, contiguous, in ``dtype``); ``w`` is ``O x C*kk``.
    ``path``: "scatter", "sparse" or "auto" (the one that moves less memory)."""
    wd = w.to(dtype)
    q = wd.T @ wd
    c, kk, n = geo.in_shape[0], geo.kernel[0] * geo.kernel[1], geo.n
    pixels = geo.in_shape[1] * geo.in_shape[2]
    if fully_connected(geo):
        out = q
    else:
        q4 = q.reshape(c, kk, c, kk)
        pairs = pixel_pairs(geo, w.device)
        if path == "auto":
            path = "scatter" if c * c * pairs.weight_pairs.numel() <= n * n // 4 else "sparse"
        if path == "scatter":
            src = q4.permute(0, 2, 1, 3).reshape(c, c, kk * kk)[:, :, pairs.offset_pairs]
            out = torch.zeros(n * n, dtype=dtype, device=w.device)
            out.index_add_(0, _scatter_index(geo, w.device), src.reshape(-1))
            out = out.reshape(n, n)
        else:
            q2 = q4.permute(1, 3, 0, 2).reshape(kk * kk, c * c)
            by_pixel = torch.sparse.mm(_count_matrix(geo, w.device, dtype), q2).reshape(pixels, pixels, c, c)
            if g is not None and scale != 0:  # add it here: the permuting copy below then carries it
                by_pixel.diagonal(dim1=2, dim2=3).add_(g.to(dtype).unsqueeze(-1), alpha=scale)
                g = None
            out = by_pixel.permute(2, 0, 3, 1).reshape(n, n)
    if g is not None and scale != 0:
        blocks = out.view(c, pixels, c, pixels).diagonal(dim1=0, dim2=2)  # pixels x pixels x C view
        blocks.add_(g.to(dtype).unsqueeze(-1), alpha=scale)
    return out
