"""One malicious-server round, measured: craft, let k clients train, read the (aggregated) update out.

Shared by ``benchmarks/imprint_table.py`` and the audit's malicious-server section, so both
speak of the same numbers: the measured ``exact_fraction`` (PSNR >= 60 dB after Hungarian
matching), the attacker's own ``certified_fraction``, the analytic expectation
``(1 - 1/bins)^(N-1)`` and whether ``inspect`` would have refused the model the clients got.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..fl.protocol import Protocol
from ..scenario import Scenario, simulate
from .craft import ImprintCraft, imprint_crafter
from .inspect import inspect_state


@dataclass(frozen=True)
class MaliciousRound:
    """One crafted round: the deployment, the server's crafting, and how many clients are summed."""

    dataset: str = "histology"  # dataset registry name
    model: str = "lenet"  # the victim the server would otherwise send
    clients: int = 1  # clients whose updates are securely aggregated (1 = no secure aggregation)
    batch_size: int = 8  # samples per client
    protocol: Protocol = field(default_factory=Protocol)  # what every client computes
    craft: ImprintCraft = field(default_factory=ImprintCraft)  # the server's imprint block
    noise: float = 0.0  # relative noise the server adds to the imprint rows to hide them from inspect
    trained_steps: int = 0  # pre-training of the victim before crafting (disjoint data)
    seed: int = 0  # client batches and model init
    model_options: dict[str, Any] = field(default_factory=dict)  # the victim's constructor options
    image_size: int | None = None  # dataset default when None
    grayscale: bool = False  # convert images to one channel
    data_root: str | None = None  # where dataset files live (MedMNIST .npz)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["protocol"] = self.protocol.to_json()
        return d


def expected_alone(*, samples: int, bins: int) -> float:
    """Chance that a sample is alone in its bin among ``samples`` (bins equally likely)."""
    return (1.0 - 1.0 / bins) ** (samples - 1)


def _noisy(craft_fn, noise: float, seed: int):
    if noise <= 0:
        return craft_fn

    def craft(spec, model):
        spec, crafted = craft_fn(spec, model)
        w = crafted.imprint.weight
        with torch.no_grad():
            scale = noise * w.norm(dim=1, keepdim=True) / w.shape[1] ** 0.5
            w.add_(scale * torch.randn(w.shape, generator=torch.Generator().manual_seed(seed + 7919)))
        return spec, crafted

    return craft


def run_round(config: MaliciousRound, *, public: torch.Tensor, exclude: torch.Tensor | None) -> dict[str, Any]:
    """Measure one round (``public``: the attacker's samples; ``exclude``: indices clients never hold)."""
    from ..attacks import create_attack
    from ..runner import evaluate

    defense = f"secagg:{config.clients}" if config.clients > 1 else None
    scenario = Scenario(dataset=config.dataset, model=config.model, batch_size=config.batch_size,
                        protocol=config.protocol, seed=config.seed, defense=defense,
                        trained_steps=config.trained_steps, model_options=dict(config.model_options),
                        image_size=config.image_size, grayscale=config.grayscale, data_root=config.data_root)
    craft = _noisy(imprint_crafter(public, config.craft), config.noise, config.seed)
    observation, truth = simulate(scenario, exclude=exclude, craft=craft)
    attack = create_attack("imprint", bins=config.craft.bins, statistic=config.craft.statistic)
    start = time.perf_counter()
    reconstruction = attack.run(observation)
    seconds = time.perf_counter() - start
    metrics = evaluate(reconstruction, truth, observation=observation)
    report = inspect_state({**observation.parameters, **observation.buffers})
    n = observation.num_samples
    return {**config.to_json(), "samples": n, "exact_fraction": metrics["exact_fraction"],
            "certified_fraction": metrics["certified_fraction"], "psnr": metrics.get("psnr"),
            "expected_alone": expected_alone(samples=n, bins=config.craft.bins), "attack_seconds": seconds,
            "inspect_alarm": report.alarm, "notes": reconstruction.notes, "_truth": truth.inputs,
            "_reconstruction": reconstruction.inputs[torch.as_tensor(metrics["assignment"])]}
