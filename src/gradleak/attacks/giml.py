"""GIML: meta-learn a generator prior by gradient inversion (Jeon et al. 2021), then GIAS with it.

Without a pretrained generator the attacker can still learn one from its own data by doing
what it will do to the client many times: for a stream of tasks (a batch of the attacker's
images, their update computed with the observed model and protocol), an inner loop of
gradient inversion adapts a copy of the generator (weights and latents) to reproduce the
task's update; Reptile (Nichol et al. 2018) then moves the generator's weights towards the
adapted copy, ``w <- w + eps (w' - w)``. The meta-learned generator is the prior of a GIAS
run on the observation.

Where the tasks come from (``tasks``, a registry):

* ``own-images`` (default): batches of the attacker's own split (priors/data.py), never the
  client's, with their updates computed by the attacker. This attacker has a data set.
* ``updates``: the updates the server received (the observed one and any ``stream`` of other
  saved observations, e.g. other clients or rounds), each inverted as it is: the setting of
  the GIAS talk (seed 001), an attacker with no images at all. Labels then come from the
  updates alone (iDLG at batch 1, LLG above it), never from attacker data.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..errors import GradleakError
from ..fl.protocol import compute_update
from ..observation import Observation
from ..priors.data import attacker_images
from ..priors.generators import Generator, GeneratorSpec, build_generator
from ..registry import Registry
from .base import Progress, register_attack
from .gias import GIAS, GIASConfig, latent_penalty
from .labels import recover_labels
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
    tasks: str = "own-images"  # Reptile's tasks: "own-images" (attacker's split) or "updates" (received updates only)
    stream: str = ""  # tasks=updates: comma-separated saved observation directories also received (same model)

    def __post_init__(self) -> None:
        super().__post_init__()
        TASKS.get(self.tasks)  # one line naming the valid choices
        if self.stream and self.tasks != "updates":
            raise GradleakError(f"stream is used only with tasks=updates, not tasks={self.tasks!r}")
        for name in ("meta_steps", "inner_steps"):
            if int(getattr(self, name)) < 1:
                raise GradleakError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.meta_lr <= 1:
            raise GradleakError(f"meta_lr must be in (0, 1], got {self.meta_lr}")


@dataclass
class Task:
    """One Reptile task: an update to invert, the model and protocol behind it, its labels."""

    observation: Observation
    model: nn.Module
    target: torch.Tensor  # the flattened update
    labels: torch.Tensor


TaskSource = Callable[["GIML", Observation, torch.Generator, torch.device], Callable[[int], Task]]
TASKS: Registry[TaskSource] = Registry("giml task source")


@TASKS.register("own-images", description="updates of batches of the attacker's own split (it has a data set)")
def own_image_tasks(attack: "GIML", observation: Observation, generator: torch.Generator,
                    device: torch.device) -> Callable[[int], Task]:
    images, labels, _rule = attacker_images(observation, data_root=attack.config.data_root)
    model = observation.build_model(device=device).requires_grad_(True)

    def task(_step: int) -> Task:
        idx = torch.randint(0, images.shape[0], (observation.num_samples,), generator=generator)
        x, y = images[idx].to(device), labels[idx].to(device)
        update = compute_update(model, inputs=x, labels=y, protocol=observation.protocol, create_graph=False)
        return Task(observation, model, flatten(list(update.values())).detach(), y)

    return task


@TASKS.register("updates", description="the received updates themselves, no attacker images (the GIAS talk)")
def received_update_tasks(attack: "GIML", observation: Observation, generator: torch.Generator,
                          device: torch.device) -> Callable[[int], Task]:
    stream = [observation] + [Observation.load(d.strip()) for d in attack.config.stream.split(",") if d.strip()]
    tasks = []
    for received in stream:
        if received.model.name != observation.model.name or received.input_shape != observation.input_shape:
            raise GradleakError(f"stream observation of {received.model.name} {tuple(received.input_shape)} does not "
                                f"match the observed {observation.model.name} {tuple(observation.input_shape)}")
        model = received.build_model(device=device).requires_grad_(True)
        names = [n for n, _ in model.named_parameters()]
        target = flatten([received.update[n].to(device) for n in names])
        labels = recover_labels(received, model=model, generator=generator, estimator="llg").labels.to(device)
        tasks.append(Task(received, model, target, labels))
    return lambda step: tasks[step % len(tasks)]


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
        task = TASKS.get(cfg.tasks)(self, observation, generator, device)
        self.meta_learn(observation, gen=gen, task=task, generator=generator, progress=progress)
        gen.eval().requires_grad_(False)
        if cfg.tasks == "updates":
            count = 1 + len([d for d in cfg.stream.split(",") if d.strip()])
            return gen, {**info, "attacker_split": f"meta-learned on {count} received update(s), no attacker images"}
        return gen, {**info, "attacker_split": f"meta-learned on {attacker_images(observation, data_root=cfg.data_root)[2]}"}

    def label_estimator(self) -> str:
        """Without attacker images (tasks=updates) labels come from the update alone."""
        return "llg" if self.config.tasks == "updates" else super().label_estimator()

    def meta_learn(self, observation: Observation, *, gen: Generator, task: Callable[[int], Task],
                   generator: torch.Generator, progress: Progress) -> None:
        """Reptile over gradient-inversion tasks (see the module docstring)."""
        cfg = self.config
        distance = DISTANCES.get(cfg.distance)
        lo = float(observation.data.get("min", 0.0))
        hi = float(observation.data.get("max", 1.0))
        gen.eval()  # BatchNorm as a fixed affine map: tasks are tiny batches
        for step in range(cfg.meta_steps):
            t = task(step)
            b = t.observation.num_samples
            fast = copy.deepcopy(gen).requires_grad_(True)
            z = gen.sample_latent(b, generator=generator).to(t.target.device).requires_grad_(True)
            opt = torch.optim.Adam([*fast.parameters(), z], lr=cfg.inner_lr)
            for _ in range(cfg.inner_steps):
                x = lo + (hi - lo) * fast(z)
                update = flatten(list(compute_update(t.model, inputs=x, labels=t.labels, protocol=t.observation.protocol,
                                                     create_graph=True).values()))
                loss = distance(update, t.target) + cfg.latent_weight * latent_penalty(z, "z")
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
