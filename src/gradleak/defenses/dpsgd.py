"""DP-SGD (Abadi et al. 2016) through Opacus: per-sample clipping, Gaussian noise, Poisson
sampling, and the (epsilon, delta) spent from Opacus's RDP accountant.

The client's per-sample gradients come from Opacus's ``GradSampleModule``; Opacus's
``DPOptimizer`` clips each to ``max_grad_norm``, sums, adds N(0, (sigma * C)^2) and divides by
the expected batch size. In federated training each local step draws a Poisson sample of the
client's data (rate q = batch / shard size) and steps the client's own accountant; the
attacked update is one such release on the attacked batch (fedsgd: the privatised gradient;
fedavg: the weight change after private local steps), also accounted (sample rate 1).
Opacus is imported lazily (the ``dp`` extra).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import GradleakError
from ..fl.protocol import Params, Protocol, client_shuffler, local_batches
from .base import Defense, against_noise, cross_entropy, register_defense, require
from .rero import dpsgd_release_mu

MAX_GRAD_NORM = 1.0  # per-sample clipping norm C (Opacus tutorials' default; noise std is sigma * C)
DELTA = 1e-5  # delta of the reported (epsilon, delta); below 1 / (records of a hospital shard)


def _opacus():
    try:
        import opacus  # noqa: F401
        from opacus import GradSampleModule
        from opacus.accountants import RDPAccountant
        from opacus.optimizers import DPOptimizer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise GradleakError(f"the dpsgd defense needs opacus (pip install opacus): {exc}") from None
    return GradSampleModule, DPOptimizer, RDPAccountant


@register_defense("dpsgd", description="DP-SGD via Opacus: per-sample clipping + Gaussian noise, noise multiplier sigma (dpsgd:sigma)")
class DPSGD(Defense):
    takes_value = True
    default_value = 1.0
    knowledge = ("architecture, weights, protocol, clipping norm and noise multiplier (cosine matching, blind to the "
                 "clipping's rescaling; more restarts against the noise)")

    def __init__(self, value: float | None = None) -> None:
        super().__init__(value)
        self.accountants: dict[int, Any] = {}

    def check(self) -> None:
        require(self.value is not None and self.value >= 0, f"DP-SGD noise multiplier must be >= 0, got {self.value}")

    # --------------------------------------------------------------- accounting
    def _account(self, client: int, *, sample_rate: float, steps: int = 1) -> None:
        _, _, RDPAccountant = _opacus()
        acc = self.accountants.setdefault(client, RDPAccountant())
        for _ in range(steps):
            acc.step(noise_multiplier=self.value, sample_rate=sample_rate)

    def epsilon(self, client: int | None = None) -> float | None:
        """Epsilon spent at ``DELTA`` by ``client`` (the worst client when None); None before any
        release, inf without noise."""
        chosen = list(self.accountants.values()) if client is None else \
            [self.accountants[client]] if client in self.accountants else []
        if not chosen:
            return None
        if self.value == 0:
            return float("inf")
        return max(float(a.get_epsilon(delta=DELTA)) for a in chosen)

    def release_epsilon(self) -> float | None:
        """Epsilon of one release of a whole batch (sample rate 1): what a single shared update costs."""
        if self.value == 0:
            return None
        _, _, RDPAccountant = _opacus()
        accountant = RDPAccountant()
        accountant.step(noise_multiplier=self.value, sample_rate=1.0)
        return float(accountant.get_epsilon(delta=DELTA))

    def details(self) -> dict[str, Any]:
        eps = self.epsilon()
        return {"noise_multiplier": self.value, "max_grad_norm": MAX_GRAD_NORM, "delta": DELTA,
                "epsilon": None if eps is None or eps == float("inf") else eps, "accountant": "opacus rdp",
                "epsilon_release": self.release_epsilon()}

    def check_model(self, model: nn.Module) -> None:
        # Batch statistics mix the samples of a batch: per-sample clipping no longer bounds one
        # record's influence, so no DP guarantee holds (Opacus refuses such layers too).
        norms = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if norms:
            raise GradleakError(f"dpsgd: the model has BatchNorm ({norms[0]}), which mixes the samples of a batch, "
                                f"so per-sample clipping gives no DP guarantee; use a model without BatchNorm")

    # ------------------------------------------------------------ private steps
    def _private(self, model: nn.Module, *, lr: float, batch: int, generator: torch.Generator):
        GradSampleModule, DPOptimizer, _ = _opacus()
        private = GradSampleModule(copy.deepcopy(model))
        private.train()  # Opacus records activations in train mode only (no BatchNorm in DP models)
        optimizer = DPOptimizer(
            torch.optim.SGD(private.parameters(), lr=lr), noise_multiplier=self.value,
            max_grad_norm=MAX_GRAD_NORM, expected_batch_size=max(1, batch), generator=generator,
        )
        return private, optimizer

    def _step(self, private: nn.Module, optimizer: Any, x: torch.Tensor, y: torch.Tensor,
              generator: torch.Generator) -> None:
        optimizer.zero_grad(set_to_none=True)
        if len(x) == 0:  # an empty Poisson sample still releases noise
            std = self.value * MAX_GRAD_NORM / optimizer.expected_batch_size
            for p in private.parameters():
                p.grad = std * torch.randn(p.shape, generator=generator, dtype=p.dtype)
            optimizer.original_optimizer.step()
            return
        cross_entropy(private, x, y).backward()
        optimizer.step()

    @staticmethod
    def _delta(private: nn.Module, model: nn.Module) -> Params:
        own = dict(private._module.named_parameters())
        return {k: (own[k].detach() - v.detach()).clone() for k, v in model.named_parameters()}

    def shared_update(
        self, model: nn.Module, *, inputs: torch.Tensor, labels: torch.Tensor, protocol: Protocol,
        generator: torch.Generator, client: int = 0, shuffle_seed: int = 0,
    ) -> Params:
        if protocol.name == "fedsgd":
            private, optimizer = self._private(model, lr=1.0, batch=len(inputs), generator=generator)
            optimizer.zero_grad(set_to_none=True)
            cross_entropy(private, inputs, labels).backward()
            optimizer.pre_step()  # clip, noise, average: p.grad is the released gradient
            self._account(client, sample_rate=1.0)
            grads = {k: p.grad.detach().clone() for k, p in private._module.named_parameters()}
            return {k: grads[k] for k, _ in model.named_parameters()}
        size = protocol.local_batch_size or len(inputs)
        private, optimizer = self._private(model, lr=protocol.lr, batch=size, generator=generator)
        shuffle = client_shuffler(protocol, shuffle_seed=shuffle_seed)
        for idx in local_batches(protocol, num_samples=len(inputs), shuffle=shuffle):
            self._step(private, optimizer, inputs[idx], labels[idx], generator)
            self._account(client, sample_rate=1.0)
        return self._delta(private, model)

    def train_client(
        self, model: nn.Module, *, inputs: torch.Tensor, labels: torch.Tensor, steps: int, batch_size: int,
        lr: float, generator: torch.Generator, client: int,
    ) -> Params:
        rate = min(1.0, batch_size / len(inputs))
        private, optimizer = self._private(model, lr=lr, batch=int(round(rate * len(inputs))), generator=generator)
        private.train()
        for _ in range(steps):
            chosen = torch.rand(len(inputs), generator=generator) < rate  # Poisson sampling
            self._step(private, optimizer, inputs[chosen], labels[chosen], generator)
        self._account(client, sample_rate=rate, steps=steps)
        return self._delta(private, model)

    def gdp_mu(self, *, protocol: Protocol, candidate_updates: Any) -> tuple[float | None, str]:
        steps = 1 if protocol.name == "fedsgd" else protocol.local_epochs  # steps whose batch holds the target
        return dpsgd_release_mu(noise_multiplier=self.value, steps=steps), \
            f"dp-sgd: sqrt({steps}) * 2 / sigma (replace-one, sensitivity 2C, noise sigma*C; exact)"

    def adaptive(self, attack_options: dict[str, Any], *, attack_fields: set[str]) -> dict[str, Any]:
        # The release is clip(g) + noise: the clipping rescales the gradient by an unknown factor,
        # which the cosine distance ignores.
        return against_noise(attack_options, attack_fields=attack_fields, distance="cosine")
