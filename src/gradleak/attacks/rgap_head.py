"""R-GAP's first step: the output layer's input and backward signal from its gradient alone.

The output layer's weight gradient is rank one, ``dL/dW = g x^T`` with ``g = dL/dlogits``.

* With a bias, ``dL/db = g`` and ``x = dL/dW^T g / |g|^2`` exactly (Phong et al. 2018).
* Without one, ``x = t u`` for the gradient's right singular vector ``u`` and an unknown scale
  ``t``; the loss fixes ``t`` through ``t * g(t * W u, y) = dL/dW u``. That scalar equation is
  R-GAP's ``dL/dmu * mu`` inversion generalised to any number of classes; like
  ``-mu / (1 + e^mu)`` it is not monotone, so it can have two roots (the second one is the
  twin data of the paper's Appendix B). Every root is returned as a :class:`Branch`; the
  attack decides between them with quantities it can compute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ROOT_RTOL = 1e-3  # a scale t whose relative residual is below this is a candidate root
_GRID = np.logspace(-6, 6, 1201)  # |t| searched; R-GAP inputs to the head are O(1e-3..1e4)


@dataclass(frozen=True)
class Branch:
    """One consistent reading of the output layer: label, head input and dL/dlogits."""

    label: int
    x: torch.Tensor  # flat input of the output layer
    k: torch.Tensor  # dL/dlogits
    scale: float  # t (signed norm of x along u); 0 when the bias gave x directly
    mu: float  # margin of the label's logit (R-GAP's mu for the logistic loss)
    residual: float  # relative residual of the scalar equation


def output_gradient(logits: torch.Tensor, label: int) -> torch.Tensor:
    """``dL/dlogits`` of the protocol's loss for rows of logits and one label."""
    if logits.shape[-1] == 1:  # logistic (BCE with logits), label in {0, 1}
        return torch.sigmoid(logits) - float(label)
    onehot = torch.zeros_like(logits)
    onehot[..., label] = 1.0
    return torch.softmax(logits, dim=-1) - onehot


def margin(logits: torch.Tensor, label: int) -> float:
    """R-GAP's ``mu``: the signed logit for one output, else true minus best other logit."""
    if logits.numel() == 1:
        return float(logits.reshape(()) * (1.0 if label == 1 else -1.0))
    others = torch.cat([logits[:label], logits[label + 1:]])
    return float(logits[label] - others.max())


def head_branches(
    *, weight: torch.Tensor, bias: torch.Tensor | None, grad_w: torch.Tensor, grad_b: torch.Tensor | None,
    labels: list[int],
) -> list[Branch]:
    """All label/scale readings consistent with the output layer's gradient."""
    if grad_b is not None and float(grad_b.norm()) > 0:
        g = grad_b
        x = grad_w.T @ g / (g @ g)
        logits = weight @ x + (bias if bias is not None else 0)
        return [Branch(int(lab), x, g, 0.0, margin(logits, int(lab)), 0.0) for lab in labels]
    _, s, vh = torch.linalg.svd(grad_w, full_matrices=False)
    if float(s[0]) == 0:
        return []
    u = vh[0]
    v = grad_w @ u  # = g * t
    a = weight @ u
    b = bias if bias is not None else torch.zeros_like(a)
    branches = []
    for label in labels:
        for t, res in _roots(a, b, v, label):
            x = t * u
            branches.append(Branch(label, x, v / t, t, margin(t * a + b, label), res))
    return branches


def _equation(t: torch.Tensor, a: torch.Tensor, b: torch.Tensor, v: torch.Tensor, label: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``F(t) = t g(t a + b) - v`` and ``dF/dt`` for a vector of scales (T x C each)."""
    t = t.reshape(-1, 1)
    logits = t * a + b
    g = output_gradient(logits, label)
    if a.numel() == 1:
        p = torch.sigmoid(logits)
        jac_a = p * (1 - p) * a
    else:
        p = torch.softmax(logits, dim=-1)
        jac_a = p * a - p * (p @ a).unsqueeze(-1)  # (diag(p) - p p^T) a
    return t * g - v, g + t * jac_a


def _roots(a: torch.Tensor, b: torch.Tensor, v: torch.Tensor, label: int) -> list[tuple[float, float]]:
    """Scales t solving the head equation: grid minima of |F| polished by Gauss-Newton."""
    vnorm = v.norm()
    roots: list[tuple[float, float]] = []
    for sign in (1.0, -1.0):
        grid = sign * torch.as_tensor(_GRID, dtype=a.dtype)
        r = _equation(grid, a, b, v, label)[0].norm(dim=1) / vnorm
        interior = (r[1:-1] < r[:-2]) & (r[1:-1] < r[2:]) & (r[1:-1] < 0.5)
        for i in (interior.nonzero().flatten() + 1).tolist():
            t = grid[i : i + 1].clone()
            for _ in range(50):
                f, df = _equation(t, a, b, v, label)
                step = (df * f).sum() / (df * df).sum().clamp(min=1e-300)
                t = t - step
                if float(step.abs()) <= 1e-15 * float(t.abs()):
                    break
            res = float(_equation(t, a, b, v, label)[0].norm() / vnorm)
            value = float(t)
            if res < ROOT_RTOL and value != 0 and all(abs(value - old) > 1e-9 * abs(value) for old, _ in roots):
                roots.append((value, res))
    return roots
