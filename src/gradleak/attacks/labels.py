"""Label recovery from the last layer's update, computed from the observation alone.

For mean cross-entropy the output bias gradient is ``g = mean_i (p_i - y_i)`` and each row of
the weight gradient is ``mean_i (p_ij - y_ij) h_i``. Hence:

- batch size 1 (iDLG, Zhao et al. 2020): the true class is the only negative bias-gradient
  entry, or (no bias, non-negative features) the only row with a negative sum;
- larger batches, class counts ``n = B (pbar - g)`` hold *exactly*, with ``pbar`` the batch's
  mean softmax; all the error lies in estimating ``pbar``:

  * ``posterior`` (default): the attacker's own labelled public split (``attacker_data``,
    disjoint from client batches) gives, per class ``k``, the mean ``A[:, k]`` and covariance
    of the per-sample signal ``(p - e_k) s`` (``s = 1`` with a bias, else the feature sum).
    The counts are the mode of a Gaussian posterior: ``B * signal ~ N(A n, sum_k n_k Cov_k)``
    (class-conditional, so ``pbar`` follows the batch's own class mix) under a multinomial
    prior with the public class shares, subject to ``sum n = B``, ``n >= 0``. When the model is
    untrained the likelihood is sharp and the prior irrelevant; when the model is accurate the
    update carries little count information (each sample's ``p_i - y_i`` is ~0) and the
    estimate moves towards the public class mix instead of amplifying noise.
  * ``llg`` (Wainakh et al. 2022, the fallback without public data): ``pbar`` and the mean
    feature sum from uniform random inputs of the attacker's, one global estimate.

For ``fedavg`` the weight difference is approximately ``-lr * steps * mean gradient``, so its
negation, divided by ``lr * steps``, stands in for the gradient. A single-logit (logistic)
head is read as two classes with probabilities ``(1 - sigmoid, sigmoid)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import GradleakError
from ..models.base import classifier_layer
from ..observation import Observation

ESTIMATORS = ("posterior", "llg")  # large-batch count estimators (see the module docstring)


@dataclass(frozen=True)
class LabelEstimate:
    labels: torch.Tensor  # int64, one per sample (order carries no meaning for B > 1)
    # "shared", "idlg-bias", "idlg-weight", "logistic-sign" (B = 1), "posterior-bias",
    # "posterior-weight", "llg-bias", "llg-weight"; "(no public data: why)" appended on fallback
    method: str


def _classifier_update(observation: Observation, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gradient-like update of the output layer's weight and bias (bias may be absent)."""
    layer = classifier_layer(model)
    names = {id(p): n for n, p in model.named_parameters()}
    weight = observation.update[names[id(layer.weight)]].double()
    bias = observation.update[names[id(layer.bias)]].double() if layer.bias is not None else None
    if observation.protocol.update_kind == "weight_delta":
        scale = -1.0 / (observation.protocol.lr * observation.protocol.local_steps(observation.num_samples))
        weight = weight * scale
        bias = bias * scale if bias is not None else None
    return weight, bias


@torch.no_grad()
def _probs_and_scale(model: nn.Module, inputs: torch.Tensor, *, use_bias: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: class probabilities (two columns for a single logit) and the signal scale s.

    The model runs in its own mode (as the client's did); buffers a train-mode BatchNorm would
    update are restored afterwards, so callers' models are left as they were.
    """
    layer = classifier_layer(model)
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    probs, scales = [], []
    for chunk in inputs.split(256):
        captured: list[torch.Tensor] = []
        handle = layer.register_forward_hook(lambda _m, inp, _o: captured.append(inp[0]))
        try:
            logits = model(chunk.to(device, dtype)).double().cpu()
        finally:
            handle.remove()
        if logits.shape[-1] == 1:
            q = torch.sigmoid(logits)
            probs.append(torch.cat([1 - q, q], dim=1))
        else:
            probs.append(torch.softmax(logits, dim=-1))
        features = captured[0].double().cpu().flatten(1)
        scales.append(torch.ones(len(chunk), dtype=torch.float64) if use_bias else features.sum(1))
    for buffer, value in saved:
        buffer.copy_(value)
    return torch.cat(probs), torch.cat(scales)


@functools.lru_cache(maxsize=8)
def _load_public(name: str, shape: tuple[int, ...], data_root: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    from ..priors.data import attacker_data  # deferred: data loading is only needed here

    size = shape[1] if len(shape) == 3 else None
    for grayscale in (False, True):
        split = attacker_data(name, data_root=data_root, image_size=size, grayscale=grayscale).data
        if tuple(split.input_shape) == shape:
            return split.inputs, split.labels
    raise GradleakError(f"attacker's {name} data have shape {tuple(split.input_shape)}, the observation {shape}")


def _public_data(observation: Observation, data_root: str | None) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, str]:
    """The attacker's own labelled split of the observation's data set, or (None, why not)."""
    name = observation.data.get("dataset")
    if not name:
        return None, "the observation names no dataset"
    try:
        return _load_public(str(name), tuple(observation.input_shape), data_root), ""
    except GradleakError as exc:
        return None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _whitener(cov: torch.Tensor) -> torch.Tensor:
    """Rows W with W^T W = pinv(cov) (directions without variance are dropped)."""
    evals, evecs = torch.linalg.eigh(cov)
    keep = evals > evals.max().clamp(min=1e-300) * 1e-9
    return (evecs[:, keep] / evals[keep].sqrt()).T


def posterior_counts(signal: torch.Tensor, probs: torch.Tensor, scales: torch.Tensor, labels: torch.Tensor,
                     *, batch: int) -> torch.Tensor:
    """Real-valued class counts: the Gaussian posterior mode described in the module docstring.

    ``signal``: the observed bias gradient (or weight-row sums), C entries; ``probs`` (N x C),
    ``scales`` (N) and ``labels`` (N): the model on the attacker's public samples.
    """
    num_classes = probs.shape[1]
    eye = torch.eye(num_classes, dtype=torch.float64)
    shares = torch.bincount(labels, minlength=num_classes).double()
    prior = (shares + 1) / (shares.sum() + num_classes)  # Laplace: no class is ruled out a priori
    means, covs = [], []
    for k in range(num_classes):
        members = labels == k
        if int(members.sum()) < 3:  # too few public samples of class k: the class-blind statistics
            members = torch.ones_like(labels, dtype=torch.bool)
        phi = (probs[members] - eye[k]) * scales[members, None]
        means.append(phi.mean(0))
        covs.append(torch.cov(phi.T).reshape(num_classes, num_classes))
    design = torch.stack(means, dim=1)  # C x C: expected batch signal per sample of each class
    noise = sum(batch * prior[k] * covs[k] for k in range(num_classes))
    noise = noise + (1e-9 * float(noise.diagonal().mean()) + 1e-12) * eye  # exact statistics: a near-hard fit
    spread = batch * (torch.diag(prior) - torch.outer(prior, prior))
    w_like, w_prior = _whitener(noise), _whitener(spread)
    rows = torch.cat([w_like @ design, w_prior])
    rhs = torch.cat([w_like @ (batch * signal), w_prior @ (batch * prior)])
    heavy = 1e4 * float(rows.abs().max().clamp(min=1.0))  # sum n = B, enforced as a heavy row
    rows = torch.cat([rows, torch.full((1, num_classes), heavy, dtype=torch.float64)])
    rhs = torch.cat([rhs, torch.tensor([heavy * batch], dtype=torch.float64)])
    from scipy.optimize import lsq_linear  # lazy: scipy.optimize costs ~0.4 s, listing attacks must not pay it

    fit = lsq_linear(rows.numpy(), rhs.numpy(), bounds=(0.0, float(batch)))
    return torch.as_tensor(np.asarray(fit.x), dtype=torch.float64)


def _counts_to_labels(estimate: torch.Tensor, negative: torch.Tensor, batch: int) -> torch.Tensor:
    """Round real-valued class counts to integers summing to ``batch`` (largest remainder).

    Classes whose gradient entry is negative must be present at least once (LLG's rule).
    """
    est = estimate.clamp(min=0)
    counts = torch.zeros_like(est, dtype=torch.long)
    present = negative.nonzero().flatten()
    for j in present[torch.argsort(estimate[present], descending=True)][:batch]:
        counts[j] = 1
    est = (est - counts).clamp(min=0)
    while int(counts.sum()) < batch:
        j = int(torch.argmax(est))
        counts[j] += 1
        est[j] -= 1.0
    return torch.repeat_interleave(torch.arange(len(counts)), counts)


def recover_labels(
    observation: Observation, *, model: nn.Module, generator: torch.Generator, estimator: str = "posterior",
    public: tuple[torch.Tensor, torch.Tensor] | None = None, data_root: str | None = None,
) -> LabelEstimate:
    """Labels for the observed batch, using the labels the client shared when it did.

    ``estimator``: one of :data:`ESTIMATORS` for batches > 1. ``public``: the attacker's own
    labelled (inputs, labels); by default its split of ``observation.data['dataset']``
    (:func:`gradleak.priors.attacker_data`, files under ``data_root``). Without usable public
    data ``posterior`` falls back to ``llg`` and the method says why.
    """
    if estimator not in ESTIMATORS:
        raise GradleakError(f"unknown label estimator {estimator!r}; choose one of: {', '.join(ESTIMATORS)}")
    if observation.labels is not None:
        return LabelEstimate(observation.labels.long().clone(), "shared")
    weight, bias = _classifier_update(observation, model)
    batch = observation.num_samples
    signal = bias if bias is not None else weight.sum(1)
    kind = "bias" if bias is not None else "weight"
    if weight.shape[0] == 1:  # single logit: dL/dz = sigmoid(z) - y, read as classes (0, 1)
        signal = torch.cat([-signal, signal])
        if batch == 1:
            return LabelEstimate(torch.full((1,), int(signal[1] < 0), dtype=torch.long), "logistic-sign")
    elif batch == 1:
        return LabelEstimate(torch.argmin(signal).reshape(1).long(), f"idlg-{kind}")
    note = ""
    if estimator == "posterior":
        if public is None:
            public, why = _public_data(observation, data_root)
            note = f" (no public data: {why})" if public is None else ""
        if public is not None:
            probs, scales = _probs_and_scale(model, public[0], use_bias=bias is not None)
            estimate = posterior_counts(signal, probs, scales, public[1].long(), batch=batch)
            return LabelEstimate(_counts_to_labels(estimate, signal < 0, batch), f"posterior-{kind}")
    dummy = torch.rand((16, *observation.input_shape), generator=generator)
    probs, scales = _probs_and_scale(model, dummy, use_bias=bias is not None)
    estimate = batch * (probs.mean(0) - signal / scales.mean().clamp(min=1e-12))
    return LabelEstimate(_counts_to_labels(estimate, signal < 0, batch), f"llg-{kind}{note}")
