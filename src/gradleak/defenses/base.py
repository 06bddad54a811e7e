"""The defense contract: what a client changes before (or while) computing what it shares.

A :class:`Defense` is built from a short spec (``noise:0.01``, ``prune:0.9``, ``dpsgd:1.0``,
``perturb``...) by :func:`parse_defense`. It can change four things, each through one hook
whose default is "no change":

* the scenario: :meth:`batch_size`, :meth:`protocol`, :meth:`model_spec` (larger batches, more
  local steps, the perturbation model);
* the client's loss: :meth:`loss` (BiDO's dependence terms, the minimax objective);
* the update it shares: :meth:`shared_update` -> :meth:`postprocess` (noise, clipping,
  pruning; DP-SGD and secure aggregation override :meth:`shared_update`);
* federated training: :meth:`train_client` and :meth:`aggregate` (used by the utility side of
  the evaluation, so the accuracy cost is measured with the same mechanism that is attacked).

:meth:`adaptive` names the attack options an attacker who knows the defense would change, and
:meth:`describe` is the JSON-able record stored in ``Observation.defense``.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GradleakError
from ..fl.protocol import Params, Protocol, client_shuffler, client_update, local_batches
from ..models.base import ModelSpec
from ..observation import Observation
from ..registry import Registry

Loss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    if logits.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype).reshape(logits.shape))
    return F.cross_entropy(logits, y)


class Defense(ABC):
    """Base: every hook is the identity; subclasses override what their mechanism changes."""

    name: ClassVar[str]
    #: whether the spec takes a number (``noise:0.01``) and its default when omitted (None: required)
    takes_value: ClassVar[bool] = False
    default_value: ClassVar[float | None] = None
    #: what the adaptive attacker against this defense is assumed to know
    knowledge: ClassVar[str] = "architecture, weights and protocol (no defense)"
    #: attacks an adaptive evaluation adds against this defense (beside the user's battery)
    extra_attacks: ClassVar[tuple[str, ...]] = ()

    def __init__(self, value: float | None = None) -> None:
        self.value = value
        self.check()

    def check(self) -> None:
        """Refuse out-of-range parameters (GradleakError naming the spec)."""

    @property
    def spec(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value:g}"

    def details(self) -> dict[str, Any]:
        """Mechanism-specific JSON-able facts (e.g. epsilon) added to :meth:`describe`."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec, "value": self.value, "attacker_knowledge": self.knowledge,
                **self.details()}

    # ------------------------------------------------------------------ scenario hooks
    def batch_size(self, batch_size: int) -> int:
        return batch_size

    def protocol(self, protocol: Protocol) -> Protocol:
        return protocol

    def model_spec(self, spec: ModelSpec) -> ModelSpec:
        return spec

    def check_model(self, model: nn.Module) -> None:
        """Refuse (GradleakError) a model the mechanism cannot protect, before any training."""

    # -------------------------------------------------------------------- client side
    custom_loss: ClassVar[bool] = False  # True when loss() differs from plain cross-entropy
    #: True when the defense only transforms a finished update (postprocess), so it can be
    #: applied to an existing observation (:func:`apply_defense`)
    post_hoc: ClassVar[bool] = False

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, client: int = 0) -> torch.Tensor:
        return cross_entropy(model, x, y)

    def prepare(self, model: nn.Module, *, generator: torch.Generator, client: int = 0) -> None:
        """Called before the client computes anything (e.g. switch on latent noise)."""

    def local_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, client: int) -> None:
        """Extra work before each local step (the perturbation defense trains its decoder here)."""

    def shared_update(
        self, model: nn.Module, *, inputs: torch.Tensor, labels: torch.Tensor, protocol: Protocol,
        generator: torch.Generator, client: int = 0, shuffle_seed: int = 0,
    ) -> Params:
        """The update the client shares for this batch under ``protocol``, defense applied.
        ``shuffle_seed``: the client's private epoch permutations when ``protocol.shuffle``."""
        self.prepare(model, generator=generator, client=client)
        if self.custom_loss:
            update = loss_update(model, inputs=inputs, labels=labels, protocol=protocol,
                                 loss=lambda m, x, y: self.loss(m, x, y, client=client), shuffle_seed=shuffle_seed)
        else:  # the very computation the attacker simulates
            update = client_update(model, inputs=inputs, labels=labels, protocol=protocol, shuffle_seed=shuffle_seed)
        return self.postprocess(update, generator=generator)

    def postprocess(self, update: Params, *, generator: torch.Generator) -> Params:
        return update

    # ---------------------------------------------------------------- federated side
    def train_client(
        self, model: nn.Module, *, inputs: torch.Tensor, labels: torch.Tensor, steps: int, batch_size: int,
        lr: float, generator: torch.Generator, client: int,
    ) -> Params:
        """``steps`` local SGD steps on random mini-batches of the client's data; returns the
        (post-processed) weight change the client shares. ``model`` is left unchanged."""
        start = {k: v.detach().clone() for k, v in model.named_parameters()}
        self.prepare(model, generator=generator, client=client)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        model.train()
        for _ in range(steps):
            idx = torch.randperm(len(inputs), generator=generator)[: min(batch_size, len(inputs))]
            x, y = inputs[idx], labels[idx]
            self.local_step(model, x, y, client=client)
            optimizer.zero_grad(set_to_none=True)
            self.loss(model, x, y, client=client).backward()
            optimizer.step()
        delta = {k: (v.detach() - start[k]) for k, v in model.named_parameters()}
        with torch.no_grad():
            for k, v in model.named_parameters():
                v.copy_(start[k])
        return self.postprocess(delta, generator=generator)

    def aggregate(self, updates: list[Params], *, generator: torch.Generator) -> Params:
        """What the server applies: the mean of the clients' updates."""
        return {k: torch.stack([u[k] for u in updates]).mean(0) for k in updates[0]}

    # ------------------------------------------------------------ privacy guarantee
    def gdp_mu(self, *, protocol: Protocol, candidate_updates: Callable[[], list[list[Params]]]) -> tuple[float | None, str]:
        """(mu, how) of one shared update as a Gaussian-DP mechanism w.r.t. replacing the target
        (:mod:`.rero`); (None, why) when the defense gives no such guarantee.
        ``candidate_updates()``: per batch slot, the clean updates with each candidate in that slot."""
        return None, "no Gaussian-DP guarantee"

    # ---------------------------------------------------------------- attacker side
    def adaptive(self, attack_options: dict[str, Any], *, attack_fields: set[str]) -> dict[str, Any]:
        """Attack option overrides for an attacker who knows this defense (only existing fields)."""
        return {}


def against_noise(attack_options: dict[str, Any], *, attack_fields: set[str], distance: str) -> dict[str, Any]:
    """Adaptive options against a noisy update: ``distance``, and twice the restarts (at least 2),
    since noise makes single runs unreliable. Only fields the attack has."""
    out: dict[str, Any] = {}
    if "distance" in attack_fields:
        out["distance"] = distance
    if "restarts" in attack_fields:
        out["restarts"] = max(2, int(attack_options.get("restarts", 1)) * 2)
    return out


def loss_update(model: nn.Module, *, inputs: torch.Tensor, labels: torch.Tensor, protocol: Protocol,
                loss: Loss, shuffle_seed: int = 0) -> Params:
    """fedsgd / fedavg with a custom client loss (BiDO, minimax), detached.

    Mirrors :mod:`gradleak.fl.protocol` (gradient of the batch loss; or local SGD over
    mini-batches, shuffled as the client shuffles, and the weight difference) with ``loss`` in place of cross-entropy.
    """
    params = [p for p in model.parameters()]
    names = [k for k, _ in model.named_parameters()]
    start = [p.detach().clone() for p in params]
    if protocol.name == "fedsgd":
        grads = torch.autograd.grad(loss(model, inputs, labels), params, allow_unused=True)
        return {k: (g if g is not None else torch.zeros_like(p)).detach() for k, g, p in zip(names, grads, params)}
    private = client_shuffler(protocol, shuffle_seed=shuffle_seed)
    steps = local_batches(protocol, num_samples=len(inputs), shuffle=private)
    try:
        for idx in steps:
            grads = torch.autograd.grad(loss(model, inputs[idx], labels[idx]), params, allow_unused=True)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    if g is not None:
                        p -= protocol.lr * g
        return {k: (p.detach() - s0) for k, p, s0 in zip(names, params, start)}
    finally:
        with torch.no_grad():
            for p, s0 in zip(params, start):
                p.copy_(s0)


DEFENSES: Registry[type[Defense]] = Registry("defense")


def register_defense(name: str, *, description: str) -> Callable[[type[Defense]], type[Defense]]:
    def decorator(cls: type[Defense]) -> type[Defense]:
        cls.name = name
        return DEFENSES.register(name, description=description)(cls)

    return decorator


def parse_defense(spec: str) -> Defense:
    """``"name"`` or ``"name:value"`` -> a checked :class:`Defense` (GradleakError otherwise)."""
    if not isinstance(spec, str) or not spec.strip():
        raise GradleakError(f"empty defense spec {spec!r}; choose one of: {', '.join(DEFENSES.names())}")
    name, sep, text = spec.strip().partition(":")
    cls = DEFENSES.get(name)  # unknown names list the valid ones
    if not sep:
        if cls.takes_value and cls.default_value is None:
            raise GradleakError(f"defense {name!r} needs a value, e.g. {name}:{_example(cls)}")
        return cls(cls.default_value if cls.takes_value else None)
    if not cls.takes_value:
        raise GradleakError(f"defense {name!r} takes no value, got {spec!r}")
    try:
        value = float(text)
    except ValueError:
        raise GradleakError(f"defense spec {spec!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise GradleakError(f"defense spec {spec!r}: value must be finite")
    return cls(value)


def apply_defense(defense: Defense, observation: Observation, *, generator: torch.Generator) -> Observation:
    """``observation`` as if its client had applied ``defense`` before sharing.

    Only for defenses that transform the finished update (noise, clipping, pruning); the others
    change how the update is computed and must run with the client (``Scenario.defense``).
    """
    if not defense.post_hoc:
        raise GradleakError(f"defense {defense.spec!r} changes how the client computes its update; give it to the "
                            f"scenario (Scenario.defense / --defense) instead of applying it to a finished observation")
    update = defense.postprocess({k: v.detach().clone() for k, v in observation.update.items()}, generator=generator)
    return dataclasses.replace(observation, update=update, defense=defense.describe())


# A typical value per defense, for error messages and `gradleak defenses` (a sensible default is "1").
EXAMPLE_VALUES = {"noise": "0.01", "laplace": "0.01", "clip": "1.0", "prune": "0.9", "prune-global": "0.9",
                  "secagg": "8", "batch": "8", "steps": "4", "dpsgd": "1.0", "perturb": "1.0", "bido": "0.05"}


def _example(cls: type[Defense]) -> str:
    return EXAMPLE_VALUES.get(cls.name, "1")


def example_spec(cls: type[Defense]) -> str:
    """A spec that works, e.g. ``noise:0.01``; the bare name for defenses that take no value."""
    return f"{cls.name}:{_example(cls)}" if cls.takes_value else cls.name


def require(condition: bool, message: str) -> None:
    if not condition:
        raise GradleakError(message)
