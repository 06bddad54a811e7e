"""Client protocols: what a federated client computes from its private batch.

One implementation serves both sides of the threat model: the client simulation (no graph)
and the attacks, which re-run the very same computation differentiably with respect to
candidate inputs (``create_graph=True``). Sharing the code guarantees that an attacker who
knows the protocol simulates exactly what the client did.

Conventions:
- ``fedsgd`` shares the gradient of the mean cross-entropy on the whole client batch.
- ``fedavg`` runs ``local_epochs`` epochs of plain SGD with learning rate ``lr`` over the
  batch split into consecutive mini-batches of ``local_batch_size`` (the whole batch when
  ``None``), and shares the weight difference ``w_local - w_global``. With ``shuffle`` the client
  permutes its batch at the start of every epoch (as a DataLoader with ``shuffle=True`` does),
  drawing the permutations from a private generator (:func:`client_round`'s ``shuffle_seed``)
  that never enters the observation; the attacker's simulation (:func:`compute_update`) has no
  such generator and keeps the batch's own order, so it cannot replay the client's order.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..errors import GradleakError
from ..registry import Registry

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Protocol:
    """How a client turns its batch into the update it shares."""

    name: str = "fedsgd"  # "fedsgd" (one gradient) or "fedavg" (local SGD, weight difference)
    lr: float = 0.1  # fedavg: local SGD learning rate
    local_epochs: int = 1  # fedavg: passes over the client batch
    local_batch_size: int | None = None  # fedavg: mini-batch size per local step; None = all
    # fedavg: the client permutes its batch every epoch with a private generator. Default False: the
    # fixed order every earlier result (and the step-replaying attacks) assumed.
    shuffle: bool = False

    def __post_init__(self) -> None:
        PROTOCOLS.get(self.name)  # unknown names fail here, listing the valid ones
        if self.local_epochs < 1:
            raise GradleakError(f"local_epochs must be >= 1, got {self.local_epochs}")
        if self.local_batch_size is not None and self.local_batch_size < 1:
            raise GradleakError(f"local_batch_size must be >= 1, got {self.local_batch_size}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise GradleakError(f"lr must be a positive finite number, got {self.lr}")
        if not isinstance(self.shuffle, bool):
            raise GradleakError(f"shuffle must be true or false, got {self.shuffle!r}")

    @property
    def update_kind(self) -> str:
        return "gradient" if self.name == "fedsgd" else "weight_delta"

    def local_steps(self, num_samples: int) -> int:
        """Number of SGD steps a fedavg client takes (1 for fedsgd)."""
        if self.name == "fedsgd":
            return 1
        per_epoch = math.ceil(num_samples / (self.local_batch_size or num_samples))
        return per_epoch * self.local_epochs

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Any, *, where: str = "protocol") -> "Protocol":
        """Strict: JSON types exactly (``"0.1"``, ``1.5`` epochs or ``true`` are refused, not coerced)."""
        from ..validation import as_bool, as_float, as_int, as_mapping, as_str, check_keys

        d = as_mapping(d, what=where)
        check_keys(d, where=where, required=("name",),
                   optional=("lr", "local_epochs", "local_batch_size", "shuffle"))
        batch = d.get("local_batch_size")
        return cls(
            name=as_str(d["name"], what=f"{where} name"),
            lr=as_float(d.get("lr", 0.1), what=f"{where} lr", positive=True),
            local_epochs=as_int(d.get("local_epochs", 1), what=f"{where} local_epochs", minimum=1),
            local_batch_size=None if batch is None else as_int(batch, what=f"{where} local_batch_size", minimum=1),
            shuffle=as_bool(d.get("shuffle", False), what=f"{where} shuffle"),
        )


UpdateFn = Callable[..., Params]
PROTOCOLS: Registry[UpdateFn] = Registry("protocol")


def _loss(model: nn.Module, params: Params | None, buffers: Params | None, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy; ``y`` holds class indices or (soft) class probabilities.

    ``params is None`` runs the module with its own parameters (no functional_call overhead).
    """
    logits = model(x) if params is None else functional_call(model, (params, buffers or {}), (x,))
    return mean_loss(logits, y)


def mean_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The client's training loss of ``logits``: cross-entropy, or logistic for a single logit (R-GAP)."""
    if logits.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype).reshape(logits.shape))
    return F.cross_entropy(logits, y)


def fedsgd_gradient(model: nn.Module, tensors: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                    create_graph: bool) -> tuple[torch.Tensor, ...]:
    """The fedsgd update for the module's own parameters ``tensors`` (in their order)."""
    return torch.autograd.grad(_loss(model, None, None, x, y), tensors, create_graph=create_graph)


@PROTOCOLS.register("fedsgd", description="one gradient of the mean loss on the client batch")
def _fedsgd(
    model: nn.Module, params: Params | None, buffers: Params | None, x: torch.Tensor, y: torch.Tensor,
    protocol: Protocol, create_graph: bool, shuffle: torch.Generator | None = None,
) -> Params:
    names, tensors = zip(*(params.items() if params is not None else model.named_parameters()))
    loss = _loss(model, params, buffers, x, y)
    grads = torch.autograd.grad(loss, tensors, create_graph=create_graph)
    return dict(zip(names, grads))


@PROTOCOLS.register("fedavg", description="local SGD epochs; shares w_local - w_global")
def _fedavg(
    model: nn.Module, params: Params | None, buffers: Params | None, x: torch.Tensor, y: torch.Tensor,
    protocol: Protocol, create_graph: bool, shuffle: torch.Generator | None = None,
) -> Params:
    steps = [(x[i], y[i]) for i in local_batches(protocol, num_samples=x.shape[0], shuffle=shuffle)]
    return local_sgd(model, params, buffers, steps, lr=protocol.lr, create_graph=create_graph)


def local_batches(protocol: Protocol, *, num_samples: int, shuffle: torch.Generator | None) -> list[torch.Tensor]:
    """Sample indices of every local step, epoch after epoch.

    Each epoch is split into consecutive mini-batches of ``local_batch_size``; a protocol with
    ``shuffle`` permutes the batch first with ``shuffle`` (the client's private generator). Without
    a generator the order is the batch's own: what an attacker, who never sees it, simulates.
    """
    size = protocol.local_batch_size or num_samples
    out = []
    for _ in range(protocol.local_epochs):
        order = (torch.randperm(num_samples, generator=shuffle) if protocol.shuffle and shuffle is not None
                 else torch.arange(num_samples))
        out += [order[start : start + size] for start in range(0, num_samples, size)]
    return out


def local_sgd(
    model: nn.Module, params: Params | None, buffers: Params | None, steps: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *, lr: float, create_graph: bool,
) -> Params:
    """Plain SGD over ``steps`` (one ``(inputs, labels)`` mini-batch each); returns ``w_end - w_start``.

    One implementation for the client and for attacks that choose their own mini-batches
    (:mod:`gradleak.attacks.fedavg`), so both simulate the same local training.
    """
    if params is None:
        params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    current = dict(params)
    for inputs, labels in steps:
        loss = _loss(model, current, buffers, inputs, labels)
        grads = torch.autograd.grad(loss, list(current.values()), create_graph=create_graph)
        current = {k: p - lr * g for (k, p), g in zip(current.items(), grads)}
    return {k: current[k] - params[k] for k in params}


def compute_update(
    model: nn.Module,
    *,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    protocol: Protocol,
    params: Params | None = None,
    buffers: Params | None = None,
    create_graph: bool = False,
) -> Params:
    """The update a client with ``inputs``/``labels`` shares under ``protocol``.

    With ``params`` (which must require grad) the model runs functionally on them, and
    ``buffers`` are cloned so train-mode BatchNorm cannot write running statistics back into
    the caller's tensors. Without ``params`` the module's own parameters and buffers are used
    directly (faster; for callers that own a private copy of the model, like the attacks).
    """
    if params is not None:
        buffers = {k: v.clone() for k, v in (buffers or {}).items()}
    return PROTOCOLS.get(protocol.name)(model, params, buffers, inputs, labels, protocol, create_graph)


def client_update(
    model: nn.Module, *, inputs: torch.Tensor, labels: torch.Tensor, protocol: Protocol, shuffle_seed: int = 0,
) -> Params:
    """What an honest client computes: the update for the model's current weights, detached."""
    return client_round(model, inputs=inputs, labels=labels, protocol=protocol, shuffle_seed=shuffle_seed)[0]


def client_shuffler(protocol: Protocol, *, shuffle_seed: int) -> torch.Generator | None:
    """The client's private generator of epoch permutations (None when it does not shuffle)."""
    return torch.Generator().manual_seed(int(shuffle_seed)) if protocol.shuffle else None


def client_round(
    model: nn.Module, *, inputs: torch.Tensor, labels: torch.Tensor, protocol: Protocol, shuffle_seed: int = 0,
) -> tuple[Params, Params]:
    """The update and the buffers the client holds after its local training (detached).

    ``shuffle_seed`` seeds the client's private epoch permutations (``protocol.shuffle``): the
    update is a deterministic function of it, and it is never part of the observation.

    A client that sends its whole ``state_dict`` back returns these buffers too: in train mode
    they are BatchNorm running statistics moved towards each local batch's statistics
    (:mod:`gradleak.fl.bn_stats` extracts those). The model's own buffers are left untouched.
    """
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    # functional_call writes train-mode BatchNorm's running statistics into these very tensors
    update = PROTOCOLS.get(protocol.name)(model, params, buffers, inputs, labels, protocol, False,
                                          client_shuffler(protocol, shuffle_seed=shuffle_seed))
    return {k: v.detach() for k, v in update.items()}, buffers
