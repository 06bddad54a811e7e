"""Privacy against utility for a list of defenses: what ``gradleak defend`` computes.

For each defense spec, from the same seed, split and initial weights:

1. utility: a short FedAvg run with the defense (:mod:`.federated`); client accuracy is the
   global model's test accuracy after the last round;
2. privacy: ``victims`` clients of the trained model each share one defended update of a fresh
   batch of their own data; the attack (from the attack registry, made adaptive when the
   defense says how) reconstructs it from the observation alone; PSNR / SSIM / MSE after
   Hungarian assignment, and the attacker accuracy: the share of reconstructions that the
   attacker's reference classifier (trained on the attacker's own split) assigns to the true
   label of the matched private sample (the seed paper's measure).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..attacks import ATTACKS, create_attack
from ..data import load_dataset
from ..fl.protocol import Protocol
from ..models import complete_spec, create_model
from ..models.base import ModelSpec
from ..observation import GroundTruth, Observation
from ..runner import evaluate
from .base import Defense, parse_defense
from .federated import FederatedConfig, Splits, accuracy, federated_training, reference_classifier, split_data

Progress = Callable[[str, int], None]  # (stage, amount)


@dataclass
class DefendConfig:
    dataset: str = "histology"  # dataset registry name
    model: str = "lenet"  # victim model (the perturb defense wraps it in latent-perturb)
    attack: str = "ig"  # attack registry name
    attack_options: dict[str, Any] = field(default_factory=dict)  # attack config overrides
    adaptive: bool = True  # let the attacker adapt to the defense (Defense.adaptive)
    victims: int = 6  # attacked client updates per defense (each of batch_size samples)
    batch_size: int = 1  # samples per attacked update (batch size 1: the strongest attack setting)
    protocol: Protocol = field(default_factory=Protocol)  # protocol of the attacked update (fedsgd)
    federated: FederatedConfig = field(default_factory=FederatedConfig)  # the utility run
    reference_steps: int = 400  # Adam steps of the attacker's reference classifier
    seed: int = 0  # split, initial weights, training, victims and attack
    image_size: int | None = None  # dataset default when None
    grayscale: bool = False
    data_root: str | None = None  # MedMNIST .npz directory
    device: str = "cpu"  # where the attack runs

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["protocol"] = self.protocol.to_json()
        return d


def quick_config(config: DefendConfig) -> DefendConfig:
    """The ``--quick`` budget: fewer rounds, victims and attack iterations (about 3 minutes)."""
    fed = dataclasses.replace(config.federated, rounds=min(config.federated.rounds, 12))
    options = dict(config.attack_options)
    if "iterations" in _fields(config.attack):
        options.setdefault("iterations", 150)
    return dataclasses.replace(config, federated=fed, victims=min(config.victims, 2), attack_options=options,
                               reference_steps=min(config.reference_steps, 200))


def _fields(attack: str) -> set[str]:
    return {f.name for f in dataclasses.fields(ATTACKS.get(attack).Config)}


@dataclass
class DefenseOutcome:
    row: dict[str, Any]  # JSON-able table row
    truth: torch.Tensor  # private samples of all victims
    reconstruction: torch.Tensor  # reconstructions aligned with ``truth``


class Evaluator:
    """Shared state of one evaluation: data, split, reference classifier."""

    def __init__(self, config: DefendConfig, *, progress: Progress = lambda _s, _n: None) -> None:
        self.config, self.progress = config, progress
        self.data = load_dataset(config.dataset, data_root=config.data_root, image_size=config.image_size,
                                 grayscale=config.grayscale)
        self.splits: Splits = split_data(self.data, config=config.federated,
                                         generator=torch.Generator().manual_seed(config.seed))
        self.spec = complete_spec(ModelSpec(name=config.model, input_shape=self.data.input_shape,
                                            num_classes=self.data.num_classes))
        self.reference = reference_classifier(
            self._model(self.spec, seed=config.seed + 1), data=self.splits.attacker, steps=config.reference_steps,
            generator=torch.Generator().manual_seed(config.seed + 1))
        self.reference_accuracy = accuracy(self.reference, *self.splits.test)

    def _model(self, spec: ModelSpec, *, seed: int) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return create_model(spec)

    def run(self, spec: str) -> DefenseOutcome:
        cfg = self.config
        defense = parse_defense(spec)
        model_spec = defense.model_spec(self.spec)
        model = self._model(model_spec, seed=cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Opacus' backward-hook notices, once per step
            history = federated_training(model, defense=defense, splits=self.splits, config=cfg.federated,
                                         generator=generator, progress=lambda n: self.progress("train", n))
        train_seconds = time.perf_counter() - start
        options = dict(cfg.attack_options)
        if cfg.adaptive:
            options.update(defense.adaptive(options, attack_fields=_fields(cfg.attack)))
        attack = create_attack(cfg.attack, **options)
        records, truths, recons = [], [], []
        start = time.perf_counter()
        choose = torch.Generator().manual_seed(cfg.seed + 7)  # same victims for every defense (paired comparison)
        for v in range(cfg.victims):
            observation, truth = self.observe(model, model_spec, defense, generator=generator, choose=choose)
            recon = attack.run(observation, generator=torch.Generator().manual_seed(cfg.seed * 1000 + v),
                               device=cfg.device, progress=lambda n: self.progress("attack", n))
            metrics = evaluate(recon, truth, observation=observation)
            aligned = recon.inputs.clamp(0, 1)[torch.as_tensor(metrics["assignment"])]
            with torch.no_grad():
                judged = self.reference(aligned).argmax(-1)
            metrics["attacker_accuracy"] = float((judged == truth.labels).float().mean())
            records.append(metrics)
            truths.append(truth.inputs)
            recons.append(aligned)
        attack_seconds = time.perf_counter() - start
        row = {
            "defense": defense.spec,
            "client_accuracy": history[-1],
            **_summary(records, ("psnr", "ssim", "mse", "attacker_accuracy", "label_accuracy")),
            "epsilon": defense.describe().get("epsilon"),
            "attack": cfg.attack,
            "attack_options": options,
            "adaptive": cfg.adaptive,
            "attacker_knowledge": defense.knowledge if cfg.adaptive else "architecture, weights and protocol (non-adaptive)",
            "victims": cfg.victims,
            "samples_per_update": defense.batch_size(cfg.batch_size),
            "accuracy_history": history,
            "train_seconds": train_seconds,
            "attack_seconds": attack_seconds,
            "details": defense.describe(),
        }
        return DefenseOutcome(row=row, truth=torch.cat(truths), reconstruction=torch.cat(recons))

    def observe(self, model: torch.nn.Module, spec: ModelSpec, defense: Defense, *,
                generator: torch.Generator, choose: torch.Generator) -> tuple[Observation, GroundTruth]:
        """One victim's defended update of the trained model (client 0's decoder for perturb)."""
        cfg = self.config
        n = defense.batch_size(cfg.batch_size)
        pool_x = torch.cat([c[0] for c in self.splits.clients])
        pool_y = torch.cat([c[1] for c in self.splits.clients])
        idx = torch.randperm(len(pool_y), generator=choose)[:n]
        x, y = pool_x[idx], pool_y[idx]
        model.eval()
        params = {k: v.detach().clone() for k, v in model.named_parameters()}
        buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
        protocol = defense.protocol(cfg.protocol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            update = defense.shared_update(model, inputs=x, labels=y, protocol=protocol, generator=generator)
        if hasattr(model, "sampling"):
            model.sampling = False
        observation = Observation(
            model=spec, parameters=params, buffers=buffers, train_mode=False, protocol=protocol, update=update,
            num_samples=n, labels=None, defense=defense.describe(),
            data={"dataset": self.data.name, "kind": self.data.kind, "min": 0.0, "max": float(self.data.data_range),
                  "class_names": list(self.data.class_names)},
        )
        return observation, GroundTruth(inputs=x, labels=y, indices=idx)


def _summary(records: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in keys:
        values = [float(r[k]) for r in records if r.get(k) is not None]
        finite = [v for v in values if math.isfinite(v)]
        mean = sum(finite) / len(finite) if finite else None
        std = (math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else 0.0) \
            if finite else None
        out[k], out[f"{k}_std"] = mean, std
    return out


def check_specs(specs: Sequence[str], *, attack: str) -> list[Defense]:
    """Parse every spec and the attack name before any long work (bad input fails fast)."""
    ATTACKS.get(attack)
    if not specs:
        from ..errors import GradleakError

        raise GradleakError("give at least one defense spec")
    return [parse_defense(s) for s in specs]


def evaluate_defenses(
    specs: Sequence[str], *, config: DefendConfig | None = None, quick: bool = False,
    progress: Progress = lambda _s, _n: None,
) -> list[dict[str, Any]]:
    """One JSON-able row per defense spec (see module docstring); ``quick`` shrinks the budget."""
    config = config or DefendConfig()
    check_specs(specs, attack=config.attack)
    config = quick_config(config) if quick else config
    evaluator = Evaluator(config, progress=progress)
    rows = []
    for spec in specs:
        row = evaluator.run(spec).row
        row["reference_accuracy"] = evaluator.reference_accuracy
        rows.append(row)
    return rows
