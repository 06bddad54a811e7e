"""The attack contract: ``create_attack(name, **config).run(observation) -> Reconstruction``.

Attacks see the observation only. Restarts are chosen by the gradient-matching loss the
attacker can compute, never by comparing with the ground truth.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from safetensors.torch import save_file

from ..errors import GradleakError
from ..observation import Observation
from ..registry import Registry

Progress = Callable[[int], None]  # called with the number of iterations just completed


@dataclass
class Reconstruction:
    """What an attack recovered, and how it got there (no ground truth inside)."""

    inputs: torch.Tensor  # B x C x H x W in the data range
    labels: torch.Tensor  # int64, B
    attack: str
    config: dict[str, Any]
    label_method: str
    loss_trace: list[float]  # gradient loss per iteration of the chosen restart
    restart_losses: list[float]  # final gradient loss of every restart
    restart_traces: list[list[float]] = field(default_factory=list)
    chosen_restart: int = 0
    seconds: float = 0.0
    iterations: int = 0  # optimisation iterations per restart (the budget)
    iterations_used: int = 0  # iterations actually run, all restarts together (a stopping rule may end early)
    notes: list[str] = field(default_factory=list)
    # slots the attack itself vouches for as exact recoveries (attacker-computable; None = no claim)
    certified: torch.Tensor | None = None
    # an inner layer's inputs the attack recovered on the way (deep spear): one row per found
    # sample, unordered; the module they enter; and which of them the attack certified
    features: torch.Tensor | None = None
    feature_layer: str | None = None
    feature_certified: torch.Tensor | None = None
    # the attack's own confidence per record variable, in [0, 1]: records.shape[:-1] + (schema
    # variables,) (tableak: agreement of its ensemble); None = no claim
    confidence: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not self.iterations_used:
            self.iterations_used = sum(len(t) for t in self.restart_traces)

    @property
    def gradient_loss(self) -> float:
        return self.restart_losses[self.chosen_restart]

    def summary(self) -> dict[str, Any]:
        """JSON-able description (tensors excluded)."""
        return {
            "attack": self.attack,
            "config": self.config,
            "label_method": self.label_method,
            "gradient_loss": self.gradient_loss,
            "restart_losses": self.restart_losses,
            "chosen_restart": self.chosen_restart,
            "seconds": self.seconds,
            "iterations": self.iterations,
            "iterations_used": self.iterations_used,
            "notes": self.notes,
            **({"feature_layer": self.feature_layer} if self.feature_layer is not None else {}),
        }

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"inputs": self.inputs.detach().cpu().contiguous(), "labels": self.labels.cpu().contiguous()}
        if self.features is not None:
            tensors["features"] = self.features.detach().cpu().contiguous()
        save_file(tensors, directory / "reconstruction.safetensors")


class Attack(ABC):
    """Base class: holds a typed config; subclasses implement :meth:`reconstruct`."""

    Config: ClassVar[type]
    name: ClassVar[str]
    threat_model: ClassVar[str] = "honest"  # "honest": the server sends the real model; "malicious": it crafts one
    attacker_knowledge: ClassVar[str] = "architecture, weights and protocol of the round"  # recorded in metrics.json

    def __init__(self, config: Any) -> None:
        self.config = config

    @classmethod
    def victim_options(cls, observation: Observation, options: dict[str, Any]) -> dict[str, Any]:
        """Options the observed victim calls for, given the user's ``options`` (none by default).

        The CLI and :func:`gradleak.api.attack` add them to what the user set: a default that
        suits one victim badly (the record attack's Adam on a GRU) can then follow the victim.
        """
        return {}

    def total_iterations(self) -> int:
        """Iterations the progress bar should expect (all restarts)."""
        cfg = self.config
        return int(getattr(cfg, "iterations", 1)) * int(getattr(cfg, "restarts", 1))

    def run(
        self,
        observation: Observation,
        *,
        generator: torch.Generator | None = None,
        device: str | torch.device = "cpu",
        progress: Progress | None = None,
    ) -> Reconstruction:
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        start = time.perf_counter()
        result = self.reconstruct(observation, generator=generator, device=torch.device(device), progress=progress or (lambda _n: None))
        result.seconds = time.perf_counter() - start
        return result

    @abstractmethod
    def reconstruct(
        self, observation: Observation, *, generator: torch.Generator, device: torch.device, progress: Progress
    ) -> Reconstruction: ...


ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(name: str, *, description: str = "") -> Callable[[type[Attack]], type[Attack]]:
    def decorator(cls: type[Attack]) -> type[Attack]:
        cls.name = name
        return ATTACKS.register(name, description=description)(cls)

    return decorator


def make_config(config_cls: type, values: dict[str, Any], *, owner: str) -> Any:
    """Build a config dataclass, naming unknown keys and the valid ones."""
    from ..validation import config_value, did_you_mean

    valid = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise GradleakError(f"unknown option(s) {', '.join(unknown)} for {owner}; valid: {', '.join(valid)}"
                            f"{did_you_mean(unknown[0], valid)}")
    checked = {k: config_value(config_cls, k, v, owner=owner) for k, v in values.items()}
    try:
        return config_cls(**checked)
    except GradleakError:
        raise
    except (TypeError, ValueError, KeyError) as exc:  # a config's own check that was not written as GradleakError
        raise GradleakError(f"{owner}: {exc.__class__.__name__}: {exc}") from None


def for_victim(name: str, options: dict[str, Any], observation: Observation) -> dict[str, Any]:
    """``options`` plus what attack ``name`` suggests for the observed victim (user's keys win)."""
    suggested = ATTACKS.get(name).victim_options(observation, dict(options))
    return {**options, **{k: v for k, v in suggested.items() if k not in options}}


def create_attack(name: str, **config: Any) -> Attack:
    """Instantiate attack ``name`` with config overrides (unknown names/options raise)."""
    cls = ATTACKS.get(name)
    return cls(make_config(cls.Config, config, owner=f"attack {name!r}"))
