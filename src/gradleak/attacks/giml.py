"""GIML: meta-learn a generator prior by gradient inversion (Jeon et al. 2021), then GIAS with it.

Without a pretrained generator the attacker can still learn one from its own data by doing
what it will do to the client many times: for a stream of tasks (a batch of the attacker's
images, their update computed with the observed model and protocol), an inner loop of
gradient inversion adapts a copy of the generator (weights and latents) to reproduce the
task's update; Reptile (Nichol et al. 2018) then moves the generator's weights towards the
adapted copy, ``w <- w + eps (w' - w)``. The meta-learned generator is the prior of a GIAS
run on the observation. The attacker's tasks come from its own split (priors/data.py),
never from the client's batch.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import GradleakError
from ..fl.protocol import compute_update
from ..observation import Observation
from ..priors.data import attacker_data
from ..priors.generators import Generator, GeneratorSpec, build_generator
from .base import Progress, register_attack
from .gias import GIAS, GIASConfig, latent_penalty
from .objective import DISTANCES, flatten


@dataclass
class GIMLConfig(GIASConfig):
    meta_steps: int = 60  # Reptile outer steps (tasks); each costs inner_steps inversions
    inner_steps: int = 10  # inversion steps per task adapting the generator copy (Reptile's k)
    inner_lr: float = 1e-3  # Adam step size of the inner loop on generator weights and latents
    meta_lr: float = 0.5  # Reptile step eps, annealed linearly to 0 over the meta steps
    arch: str = "dcgan"  # architecture of the generator learnt from scratch
    latent_dim: int = 64  # latent size of that generator
    width: int = 32  # first-map channels of that generator (small: it is trained during the attack)
    data_root: str | None = None  # where the attacker's data files live (MedMNIST .npz)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("meta_steps", "inner_steps"):
            if int(getattr(self, name)) < 1:
                raise GradleakError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.meta_lr <= 1:
            raise GradleakError(f"meta_lr must be in (0, 1], got {self.meta_lr}")


def _attacker_images(observation: Observation, data_root: str | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The attacker's split of the observation's data set, at the observation's shape."""
    name = observation.data.get("dataset")
    if not name:
        raise GradleakError("giml needs the observation's dataset name (observation.data['dataset']) to use the attacker's split")
    c, h, _w = observation.input_shape
    split = attacker_data(str(name), data_root=data_root, image_size=h, grayscale=False)
    if split.data.input_shape[0] != c:
        split = attacker_data(str(name), data_root=data_root, image_size=h, grayscale=True)
    if tuple(split.data.input_shape) != tuple(observation.input_shape):
        raise GradleakError(
            f"attacker's {name} images have shape {split.data.input_shape} but the observation's inputs are {observation.input_shape}"
        )
    return split.data.inputs, split.data.labels, split.rule


@register_attack("giml", description="GIML: Reptile meta-learning of a generator over inversions of own data, then GIAS")
class GIML(GIAS):
    Config = GIMLConfig

    def total_iterations(self) -> int:
        return super().total_iterations() + self.config.meta_steps * self.config.inner_steps

    def prior_generator(
        self, observation: Observation, device: torch.device, generator: torch.Generator, progress: Progress
    ) -> tuple[Generator, dict[str, Any]]:
        cfg = self.config
        if cfg.prior:  # GIML from a given starting prior: meta-learning continues from it
            gen, info = super().prior_generator(observation, device, generator, progress)
            gen = copy.deepcopy(gen)
        else:
            spec = GeneratorSpec(arch=cfg.arch, shape=tuple(observation.input_shape), latent_dim=cfg.latent_dim, width=cfg.width)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
                gen = build_generator(spec).to(device)
            info = {}
        images, labels, rule = _attacker_images(observation, cfg.data_root)
        self.meta_learn(observation, gen=gen, images=images, labels=labels, generator=generator, device=device,
                        progress=progress)
        gen.eval().requires_grad_(False)
        return gen, {**info, "attacker_split": f"meta-learned on {rule}"}

    def meta_learn(
        self, observation: Observation, *, gen: Generator, images: torch.Tensor, labels: torch.Tensor,
        generator: torch.Generator, device: torch.device, progress: Progress,
    ) -> None:
        """Reptile over gradient-inversion tasks built from the attacker's own images."""
        cfg = self.config
        model = observation.build_model(device=device)
        model.requires_grad_(True)
        distance = DISTANCES.get(cfg.distance)
        lo = float(observation.data.get("min", 0.0))
        hi = float(observation.data.get("max", 1.0))
        gen.eval()  # BatchNorm as a fixed affine map: tasks are tiny batches
        b = observation.num_samples
        for step in range(cfg.meta_steps):
            idx = torch.randint(0, images.shape[0], (b,), generator=generator)
            x_task, y_task = images[idx].to(device), labels[idx].to(device)
            target = flatten(list(compute_update(model, inputs=x_task, labels=y_task, protocol=observation.protocol,
                                                 create_graph=False).values())).detach()
            fast = copy.deepcopy(gen).requires_grad_(True)
            z = gen.sample_latent(b, generator=generator).to(device).requires_grad_(True)
            opt = torch.optim.Adam([*fast.parameters(), z], lr=cfg.inner_lr)
            for _ in range(cfg.inner_steps):
                x = lo + (hi - lo) * fast(z)
                update = flatten(list(compute_update(model, inputs=x, labels=y_task, protocol=observation.protocol,
                                                     create_graph=True).values()))
                loss = distance(update, target) + cfg.latent_weight * latent_penalty(z, "z")
                variables = [*fast.parameters(), z]
                grads = torch.autograd.grad(loss, variables, allow_unused=True)
                for v, g in zip(variables, grads):
                    v.grad = g
                opt.step()
                progress(1)
                if not math.isfinite(float(loss.detach())):
                    raise GradleakError(f"giml inner loop diverged at meta step {step}; try a smaller inner_lr")
            eps = cfg.meta_lr * (1 - step / cfg.meta_steps)
            with torch.no_grad():
                for p, q in zip(gen.parameters(), fast.parameters()):
                    p.add_(eps * (q - p))
