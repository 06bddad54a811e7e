"""Latent code from the classifier head's gradient, decoded by a decoder the attacker trains.

The attack the latent perturbation defense (seed 004) is built to resist, run by the server
instead of the client's proxy: a linear output layer ``logits = W z + b`` has gradients
``dL/dW = delta z^T`` and ``dL/db = delta`` for one sample, so the head's input ``z`` (the
latent code, noise included) is ``dW^T db / ||db||^2``, exactly (Geiping et al. 2020, Prop. 3.1;
the basis of R-GAP's and SPEAR's last layer). The attacker then trains its own decoder
``z -> image`` on its own split (the codes the model gives its images, with the model's own
learned latent noise when the model has one: the attacker knows its scale, it is a weight),
and decodes the recovered code.

At batch 1 the code is exact (``certified`` when the head's gradient is rank one to float64
precision); with several samples the rows mix their codes and the decoded image is a blend
(notes say so). FedAvg with several local steps shares a weight change, not a gradient; the
ratio still holds for one step and approximately for a few.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GradleakError
from ..models.base import classifier_layer
from ..observation import Observation
from .base import Attack, Progress, Reconstruction, register_attack
from .labels import recover_labels

RANK_ONE_TOL = 1e-6  # relative residual of dW - db z^T below which the code counts as exact


@dataclass
class LatentDecoderConfig:
    steps: int = 1500  # Adam steps training the decoder on the attacker's split
    lr: float = 1e-3  # decoder learning rate
    hidden: int = 256  # decoder hidden units (latent -> hidden -> image)
    batch: int = 64  # decoder training mini-batch
    noisy_codes: bool = True  # train on codes with the model's own latent noise (latent-perturb), as the client sends
    data_root: str | None = None  # where the attacker's data files live (MedMNIST .npz)

    def __post_init__(self) -> None:
        for name in ("steps", "hidden", "batch"):
            if int(getattr(self, name)) < 1:
                raise GradleakError(f"latent-decoder: {name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise GradleakError(f"latent-decoder: lr must be > 0, got {self.lr}")


def head_code(observation: Observation, model: nn.Module) -> tuple[torch.Tensor, float, int]:
    """(code ``z``, relative rank-one residual, head output size) from the head's weight and bias update."""
    head = classifier_layer(model)
    if head.bias is None:
        raise GradleakError("latent-decoder needs an output layer with a bias (its gradient is delta)")
    names = {id(p): n for n, p in model.named_parameters()}
    dw = observation.update[names[id(head.weight)]].double()
    db = observation.update[names[id(head.bias)]].double()
    if float(db.norm()) == 0.0:
        raise GradleakError("latent-decoder: the output bias received no update, so the code cannot be read")
    z = dw.T @ db / (db @ db)
    residual = float((dw - torch.outer(db, z)).norm() / dw.norm().clamp(min=1e-300))
    return z, residual, head.out_features


def _codes(model: nn.Module, images: torch.Tensor, *, noisy: bool, generator: torch.Generator) -> torch.Tensor:
    """The head's inputs for ``images`` (latent noise drawn when the model has it and ``noisy``)."""
    head, captured = classifier_layer(model), []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    sampling = hasattr(model, "sampling")
    if sampling:
        model.sampling, model.generator = noisy, generator
    try:
        with torch.no_grad():
            model(images)
    finally:
        hook.remove()
        if sampling:
            model.sampling = False
    return captured[0].flatten(1)


@register_attack("latent-decoder", description="head gradient -> latent code, decoded by a decoder trained on the "
                                               "attacker's own data (vs the latent perturbation defense)")
class LatentDecoder(Attack):
    Config = LatentDecoderConfig
    uses_attacker_data = True  # the decoder learns from the attacker's split; clients never hold it
    attacker_knowledge: ClassVar[str] = ("architecture, weights (the latent noise scale included) and protocol; "
                                         "its own data of the same kind to train a decoder")

    def __init__(self, config: LatentDecoderConfig) -> None:
        super().__init__(config)
        # one decoder (and its training trace) per global model: the victims of a round share it
        self._decoders: dict[tuple, tuple[nn.Module, list[float]]] = {}

    def total_iterations(self) -> int:
        return self.config.steps

    def reconstruct(
        self, observation: Observation, *, generator: torch.Generator, device: torch.device, progress: Progress
    ) -> Reconstruction:
        from ..priors.data import attacker_images

        cfg = self.config
        model = observation.build_model(device="cpu").eval()
        z, residual, _ = head_code(observation, model)
        images, _, rule = attacker_images(observation, data_root=cfg.data_root)
        shape = tuple(observation.input_shape)
        lo, hi = float(observation.data.get("min", 0.0)), float(observation.data.get("max", 1.0))
        key = (observation.model.name, tuple(float(p.double().sum()) for p in observation.parameters.values()))
        if key in self._decoders:  # this global model's decoder is trained already (another victim)
            decoder, trace = self._decoders[key]
            progress(cfg.steps)
        else:
            decoder, trace = self._train(model, images, z.numel(), shape, lo, hi, generator, progress)
            self._decoders[key] = (decoder, trace)
        with torch.no_grad():
            recon = lo + (hi - lo) * torch.sigmoid(decoder(z.float().reshape(1, -1))).reshape(1, *shape)
        n = observation.num_samples
        estimate = recover_labels(observation, model=model, generator=generator)
        labels = estimate.labels[:n]
        exact = n == 1 and residual < RANK_ONE_TOL
        notes = [f"head code read with rank-one residual {residual:.1e} ({'exact' if exact else 'a mixture of samples'})",
                 f"decoder trained {cfg.steps} steps on the attacker's split ({rule}); final MSE {trace[-1]:.4f}"]
        if n > 1:
            notes.append(f"{n} samples share the head's gradient: every slot holds the decoded blend of their codes")
        return Reconstruction(
            inputs=recon.expand(n, *shape).contiguous(), labels=labels.long(), attack=self.name,
            config=dataclasses.asdict(cfg), label_method=estimate.method, loss_trace=trace,
            restart_losses=[trace[-1]], restart_traces=[trace], iterations=cfg.steps, notes=notes,
        )

    def _train(self, model: nn.Module, images: torch.Tensor, width: int, shape: tuple[int, ...], lo: float, hi: float,
               generator: torch.Generator, progress: Progress) -> tuple[nn.Module, list[float]]:
        """The attacker's decoder: codes of its own images (noise as the client draws it) -> images."""
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            decoder = nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU(),
                                    nn.Linear(cfg.hidden, int(torch.tensor(shape).prod())))
        opt = torch.optim.Adam(decoder.parameters(), lr=cfg.lr)
        trace = []
        for _ in range(cfg.steps):
            pick = torch.randint(0, len(images), (min(cfg.batch, len(images)),), generator=generator)
            x = images[pick]
            codes = _codes(model, x, noisy=cfg.noisy_codes, generator=generator)
            out = lo + (hi - lo) * torch.sigmoid(decoder(codes)).reshape(-1, *shape)
            loss = F.mse_loss(out, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(float(loss.detach()))
            progress(1)
        return decoder, trace
