"""R-GAP's first step: the output layer's input and backward signal from its gradient alone.

The output layer's weight gradient is rank one for one sample, ``dL/dW = g x^T`` with
``g = dL/dlogits``.

* With a bias, ``dL/db = g`` and ``x = dL/dW^T g / |g|^2`` exactly (Phong et al. 2018), and the
  label is read off ``g`` (the only negative entry for cross-entropy, the sign for the
  logistic loss).
* Without one, ``x = t u`` for the gradient's right singular vector ``u`` and an unknown scale
  ``t``; the loss fixes ``t`` through ``t * g(t * W u, y) = dL/dW u``. For the single-logit
  logistic loss this is the paper's ``<dL/dw_d, w_d> = dL/dmu * mu`` (Eq. 9/11), which is not
  monotone in ``mu``: a value < 0 has two roots ``mu`` (the second one is the twin data of
  Appendix B). Every root is returned as a :class:`Branch`; the attack decides between them
  with quantities it can compute and reports when it cannot.

For cross-entropy without a bias the label is analytic up to the sign of ``t``:
``v = dL/dW u = t g`` and ``g`` has exactly one negative entry (the label), so the label is
``argmin v`` when ``t > 0`` and ``argmax v`` when ``t < 0``; both are tried.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

ROOT_RTOL = 1e-3  # a scale t whose relative residual is below this is a root
_GRID = np.logspace(-8, 8, 1601)  # |t| searched (norm of the head's input), 100 points a decade


@dataclass(frozen=True)
class Branch:
    """One consistent reading of the output layer: label, head input and dL/dlogits."""

    label: int
    x: torch.Tensor  # flat input of the output layer
    k: torch.Tensor  # dL/dlogits
    scale: float  # t (signed norm of x along u); 0 when the bias gave x directly
    mu: float  # margin of the label's logit (R-GAP's mu for the logistic loss)
    residual: float  # relative residual of the scalar head equation (0: exact reading)


def sample_loss(logits: torch.Tensor, label: int) -> torch.Tensor:
    """The protocol's loss for one sample (BCE with logits for one output, else cross-entropy)."""
    if logits.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), torch.full((1,), float(label), dtype=logits.dtype, device=logits.device))
    return F.cross_entropy(logits.reshape(1, -1), torch.tensor([label], device=logits.device))


def output_gradient(logits: torch.Tensor, label: int) -> torch.Tensor:
    """``dL/dlogits`` of :func:`sample_loss` for rows of logits and one label."""
    if logits.shape[-1] == 1:
        return torch.sigmoid(logits) - float(label)
    onehot = torch.zeros_like(logits)
    onehot[..., label] = 1.0
    return torch.softmax(logits, dim=-1) - onehot


def margin(logits: torch.Tensor, label: int) -> float:
    """R-GAP's ``mu``: the signed logit for one output, else true minus best other logit."""
    logits = logits.reshape(-1)
    if logits.numel() == 1:
        return float(logits[0] * (1.0 if label == 1 else -1.0))
    others = torch.cat([logits[:label], logits[label + 1:]])
    return float(logits[label] - others.max())


def candidate_labels(v: torch.Tensor) -> list[int]:
    """Labels consistent with ``v = t g`` for either sign of ``t`` (see the module docstring)."""
    if v.numel() == 1:
        return [0, 1]
    return sorted({int(v.argmin()), int(v.argmax())})


def _labels_from_bias(g: torch.Tensor) -> list[int]:
    if g.numel() == 1:
        return [1 if float(g[0]) < 0 else 0]
    negative = (g < 0).nonzero().flatten().tolist()
    return negative if len(negative) == 1 else list(range(g.numel()))


def head_branches(
    *, weight: torch.Tensor, bias: torch.Tensor | None, grad_w: torch.Tensor, grad_b: torch.Tensor | None,
    labels: list[int] | None = None, relaxed: bool = False,
) -> list[Branch]:
    """All label/scale readings consistent with the output layer's gradient.

    ``labels``: the labels to consider (None: derive them). ``relaxed``: when no exact root
    exists (a batch's rank-B gradient), return the best-fitting scale per label instead.
    """
    if grad_b is not None and float(grad_b.norm()) > 0:
        g = grad_b
        x = grad_w.T @ g / (g @ g)
        logits = weight @ x + (bias if bias is not None else 0)
        chosen = labels if labels is not None else _labels_from_bias(g)
        return [Branch(int(lab), x, g, 0.0, margin(logits, int(lab)), 0.0) for lab in chosen]
    _, s, vh = torch.linalg.svd(grad_w, full_matrices=False)
    if float(s[0]) == 0:
        return []
    u = vh[0]
    v = grad_w @ u  # = g * t
    a = weight @ u
    b = bias if bias is not None else torch.zeros_like(a)
    branches = []
    for label in labels if labels is not None else candidate_labels(v):
        for t, res in _roots(a, b, v, label, relaxed=relaxed):
            logits = t * a + b
            branches.append(Branch(label, t * u, v / t, t, margin(logits, label), res))
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


def _polish(t: torch.Tensor, a, b, v, label) -> torch.Tensor:
    """Gauss-Newton on the scalar t (quadratic convergence near a root)."""
    for _ in range(60):
        f, df = _equation(t, a, b, v, label)
        step = (df * f).sum() / (df * df).sum().clamp(min=1e-300)
        t = t - step
        if float(step.abs()) <= 1e-15 * float(t.abs()):
            break
    return t


def _roots(a: torch.Tensor, b: torch.Tensor, v: torch.Tensor, label: int, *, relaxed: bool) -> list[tuple[float, float]]:
    """Scales t solving the head equation: grid minima of |F| polished by Gauss-Newton."""
    vnorm = v.norm().clamp(min=1e-300)
    roots: list[tuple[float, float]] = []
    best: tuple[float, float] | None = None
    for sign in (1.0, -1.0):
        grid = sign * torch.as_tensor(_GRID, dtype=a.dtype, device=a.device)
        r = _equation(grid, a, b, v, label)[0].norm(dim=1) / vnorm
        interior = (r[1:-1] <= r[:-2]) & (r[1:-1] <= r[2:]) & (r[1:-1] < 0.5)
        for i in (interior.nonzero().flatten() + 1).tolist():
            t = _polish(grid[i : i + 1].clone(), a, b, v, label)
            res, value = float(_equation(t, a, b, v, label)[0].norm() / vnorm), float(t)
            if best is None or res < best[1]:
                best = (value, res)
            if res < ROOT_RTOL and value != 0 and all(abs(value - old) > 1e-9 * abs(value) for old, _ in roots):
                roots.append((value, res))
    if not roots and relaxed and best is not None and best[0] != 0:
        return [best]
    return roots
