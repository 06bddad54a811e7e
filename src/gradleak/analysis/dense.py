"""The slow, obviously-correct reference: R-GAP with dense matrices, as the public code does.

Each layer's ``W`` and ``K`` are written down as dense Jacobians of the layer's own torch
functions (``conv2d`` / ``linear`` and the autograd weight gradient), independently of the
fold/unfold algebra of :mod:`.operators`, and the stacked system is solved by a dense
least-squares solver (``torch.linalg.lstsq``; the pseudo-inverse when rank deficient).
Memory grows as ``(|W| + |z|) x |x|``: tests run it on tiny nets only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .chain import ChainLayer
from .system import small_ops


def _layer_fn(layer: ChainLayer):
    """``f(x, weight)``: the layer's bias-free map on a batch of flat inputs."""
    m = layer.module
    if isinstance(m, nn.Conv2d):
        return lambda x, w: F.conv2d(x.reshape(-1, *layer.in_shape), w, None, m.stride, m.padding, m.dilation).flatten(1)
    return lambda x, w: F.linear(x, w)


def dense_matrices(layer: ChainLayer, k: torch.Tensor, *, gradient: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dense ``W`` (|z| x |x|) and ``K`` (|W| x |x|) of one layer for backward signal ``k``,
    column by column: the layer applied to unit inputs, and autograd's weight gradient of
    ``<k, layer(e_j)>`` (one backward pass per unknown)."""
    f = _layer_fn(layer)
    w = layer.module.weight.detach().to(k.dtype).requires_grad_(True)
    eye = torch.eye(layer.in_size, dtype=k.dtype, device=k.device)
    with torch.no_grad():
        weight_rows = f(eye, w.detach()).T
    if not gradient:
        return weight_rows, None
    with torch.enable_grad():
        cols = [torch.autograd.grad((k * f(e.unsqueeze(0), w)[0]).sum(), w)[0].reshape(-1) for e in eye]
    return weight_rows, torch.stack(cols, dim=1)


def dense_solve(layer: ChainLayer, *, k: torch.Tensor, z: torch.Tensor, grad_w: torch.Tensor) -> torch.Tensor:
    """Minimum-norm least-squares input of the stacked system ``[W; K] x = [z; dL/dW]``.

    The gradient rows are scaled to the weight rows' norm, as the fast solver does (the
    solution of a consistent system does not depend on it).
    """
    w_rows, k_rows = dense_matrices(layer, k)
    scale = (w_rows.norm() / k_rows.norm().clamp(min=1e-300)) if w_rows.norm() > 0 else 1.0
    a = torch.cat([w_rows, scale * k_rows])
    b = torch.cat([z.reshape(-1), scale * grad_w.reshape(-1)])
    return torch.linalg.pinv(a, rtol=1e-10) @ b


def dense_recursion(chain: list[ChainLayer], *, head_x: torch.Tensor, head_k: torch.Tensor,
                    gradients: list[torch.Tensor]) -> torch.Tensor:
    """Algorithm 1 below the output layer, with dense matrices: the first layer's input.

    ``head_x``/``head_k``: the output layer's input and dL/dlogits; ``gradients``: each
    layer's weight gradient, input side first.
    """
    with small_ops():
        return _recursion(chain, head_x, head_k, gradients)


def _recursion(chain, x, k, gradients):
    for i in range(len(chain) - 2, -1, -1):
        below, above = chain[i], chain[i + 1]
        w_above, _ = dense_matrices(above, k, gradient=False)
        z = below.activation.inverse(x)
        k = (w_above.T @ k) * below.activation.derivative(z)
        if below.module.bias is not None:
            z = z - below.module.bias.detach().to(z.dtype).repeat_interleave(below.out_size // below.out_channels)
        x = dense_solve(below, k=k, z=z, grad_w=gradients[i])
    return x
