"""Privacy against utility for a list of defenses: what ``gradleak defend`` computes.

For each defense spec, from the same seed, split and initial weights:

1. utility: a short FedAvg run with the defense (:mod:`.federated`); client accuracy is the
   global model's test accuracy after the last round;
2. privacy: ``victims`` clients of the trained model each share one defended update of a fresh
   batch of their own data (the same victims for every defense: a paired comparison); every
   attack (from the attack registry, made adaptive when the defense says how) reconstructs it
   from the observation alone; PSNR / SSIM / MSE after Hungarian assignment, and the attacker
   accuracy: the share of reconstructions that the attacker's reference classifier (trained on
   the attacker's own split) assigns to the true label of the matched private sample (the seed
   paper's measure).

With several attacks each row carries two answers. The **attacker's pick** (``pick_*``): per
attacked update, the reconstruction that best reproduces the defended update (float64 cosine
mismatch on the entries the defense transmits), a choice the attacker can make without the
private data. The **defender's worst case** (the unprefixed columns): per update, the attack
whose reconstruction scores the highest PSNR, chosen with the private data; an upper bound the
attacker cannot select but the one a recommendation must survive. With ``side_by_side`` the same
updates are also attacked by the non-adaptive attacker (``non_adaptive_*``), so a table shows what
adapting adds; the adaptive attacker, who knows the defense, may also run those plain variants,
so its battery holds both and it is never weaker than the non-adaptive one (measured: against
``noise:0.01`` on histology/LeNet, IG's plain cosine matching beat its noise-adapted L2 variant).
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
from ..data.schema import RECORD_KINDS, column_statistics
from ..errors import GradleakError
from ..fl.protocol import Protocol
from ..models import complete_spec, create_model
from ..models.base import ModelSpec
from ..observation import GroundTruth, Observation
from ..runner import evaluate
from ..attacks.objective import update_mismatch
from .adaptive import plan_attack
from .base import Defense, parse_defense
from .rero import CANDIDATES, ReRoCheck, identified
from .federated import FederatedConfig, Splits, accuracy, federated_training, reference_classifier, split_data

Progress = Callable[[str, int], None]  # (stage, amount): ("round", 1) per FedAvg round, ("victim", 1) per attack run
RECORD_SCORES = ("feature_accuracy", "similarity", "baseline_feature_accuracy", "confidence_q4_accuracy",
                 "confidence_q4_baseline")  # health records (metrics.tabular); null for images
SCORES = ("psnr", "ssim", "mse", "attacker_accuracy", "label_accuracy", *RECORD_SCORES)
# reported for the attacker's pick and non-adaptive runs
PICK_SCORES = ("psnr", "ssim", "mse", "attacker_accuracy", "feature_accuracy")


def leak_metric(data_kind: str) -> str:
    """The score the defender's worst case maximises: PSNR for images, feature accuracy for records."""
    return "feature_accuracy" if data_kind in RECORD_KINDS else "psnr"


@dataclass
class DefendConfig:
    dataset: str = "histology"  # dataset registry name
    model: str = "lenet"  # victim model (the perturb defense wraps it in latent-perturb)
    model_options: dict[str, Any] = field(default_factory=dict)  # the model's options, e.g. {"width": 16}
    attack: str = "ig"  # attack registry name
    extra_attacks: tuple[str, ...] = ()  # further attacks; each row reports the strongest (highest mean PSNR)
    attack_options: dict[str, Any] = field(default_factory=dict)  # config overrides, given to each attack that has the field
    adaptive: bool = True  # let the attacker adapt to the defense (Defense.adaptive)
    victims: int = 8  # attacked client updates per defense (each of batch_size samples)
    batch_size: int = 1  # samples per attacked update (batch size 1: the strongest attack setting)
    protocol: Protocol = field(default_factory=Protocol)  # protocol of the attacked update (fedsgd)
    federated: FederatedConfig = field(default_factory=FederatedConfig)  # the utility run
    reference_steps: int = 400  # Adam steps of the attacker's reference classifier
    seed: int = 0  # split, initial weights, training, victims and attack
    image_size: int | None = None  # dataset default when None
    grayscale: bool = False  # convert images to one channel
    data_root: str | None = None  # MedMNIST .npz directory
    device: str = "cpu"  # where the attack runs
    rero_candidates: int = CANDIDATES  # candidates of the identification game behind the DP bound (kappa = 1/n)
    side_by_side: bool = True  # also attack with the non-adaptive attacker (non_adaptive_* columns; adaptive ones decide)

    @property
    def attacks(self) -> tuple[str, ...]:
        return (self.attack, *self.extra_attacks)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["protocol"] = self.protocol.to_json()
        d["extra_attacks"] = list(self.extra_attacks)
        return d


QUICK_ROUNDS, QUICK_VICTIMS, QUICK_ITERATIONS, QUICK_REFERENCE_STEPS = 20, 3, 200, 200


def quick_config(config: DefendConfig) -> DefendConfig:
    """The ``--quick`` budget: fewer rounds, victims and attack iterations (about 3 minutes)."""
    fed = dataclasses.replace(config.federated, rounds=min(config.federated.rounds, QUICK_ROUNDS))
    options = dict(config.attack_options)
    if any("iterations" in _fields(a) for a in config.attacks):
        options.setdefault("iterations", QUICK_ITERATIONS)
    return dataclasses.replace(config, federated=fed, victims=min(config.victims, QUICK_VICTIMS), attack_options=options,
                               reference_steps=min(config.reference_steps, QUICK_REFERENCE_STEPS))


def _fields(attack: str) -> set[str]:
    return {f.name for f in dataclasses.fields(ATTACKS.get(attack).Config)}


def attack_options(config: DefendConfig, attack: str, defense: Defense, *, adaptive: bool | None = None) -> dict[str, Any]:
    """The options ``attack`` runs with: the user's (where it has the field), then the adaptive ones
    (unless ``adaptive`` is False; None: the config's choice)."""
    fields = _fields(attack)
    options = {k: v for k, v in config.attack_options.items() if k in fields}
    adaptive = config.adaptive if adaptive is None else adaptive
    return plan_attack(attack, options=options, defense=defense, adaptive=adaptive).options


def mismatch_entries(defense: Defense) -> str:
    """The update entries the attacker's criterion compares: those the defense transmits.

    Asked of the defense itself (its adaptive override of a matcher's ``entries``), so a new
    sparsifying defense gets a mask-aware criterion without a change here.
    """
    return str(defense.adaptive({}, attack_fields={"entries"}).get("entries", "all"))


@dataclass
class DefenseOutcome:
    row: dict[str, Any]  # JSON-able table row
    truth: list[torch.Tensor]  # private samples, one tensor per victim
    reconstruction: list[torch.Tensor]  # the strongest attack's reconstructions, aligned with ``truth``

    def first(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(truth, reconstruction) of each victim's first ``count`` samples, concatenated.

        Every defense draws its victims' samples as prefixes of the same permutations, so
        these are the same private samples in every outcome (secagg/batch rows hold more).
        """
        return torch.cat([t[:count] for t in self.truth]), torch.cat([r[:count] for r in self.reconstruction])


class Evaluator:
    """Shared state of one evaluation: data, split, reference classifier."""

    def __init__(self, config: DefendConfig, *, progress: Progress = lambda _s, _n: None) -> None:
        self.config, self.progress = config, progress
        self.data = load_dataset(config.dataset, data_root=config.data_root, image_size=config.image_size,
                                 grayscale=config.grayscale)
        self.splits: Splits = split_data(self.data, config=config.federated,
                                         generator=torch.Generator().manual_seed(config.seed))
        self.spec = complete_spec(ModelSpec(name=config.model, input_shape=self.data.input_shape,
                                            num_classes=self.data.num_classes, options=dict(config.model_options)))
        self.reference = reference_classifier(
            self._model(self.spec, seed=config.seed + 1), data=self.splits.attacker, steps=config.reference_steps,
            generator=torch.Generator().manual_seed(config.seed + 1))
        self.reference_accuracy = accuracy(self.reference, *self.splits.test)
        self.records = self.data.kind in RECORD_KINDS
        self.metric = leak_metric(self.data.kind)

    def visible(self, inputs: torch.Tensor) -> torch.Tensor:
        """What is compared and judged: images clamped to their range; records (standardised) as they are."""
        return inputs if self.records else inputs.clamp(0, 1)

    def _model(self, spec: ModelSpec, *, seed: int) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return create_model(spec)

    def judge(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Share of ``images`` the attacker's reference classifier labels as ``labels``."""
        with torch.no_grad():
            return float((self.reference(self.visible(images)).argmax(-1) == labels).float().mean())

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
                                         generator=generator, progress=lambda n: self.progress("round", n))
        train_seconds = time.perf_counter() - start
        epsilon_training = defense.describe().get("epsilon")  # before the attacked releases
        start = time.perf_counter()
        choose = torch.Generator().manual_seed(cfg.seed + 7)  # same victims for every defense (paired comparison)
        views = [self.observe(model, model_spec, defense, generator=generator, choose=choose, victim=v)
                 for v in range(cfg.victims)]
        others = [self.others(t.indices, victim=v) for v, (_, t) in enumerate(views)]
        results = {name: self.attack(name, defense, views, others=others) for name in battery_for(cfg, defense)}
        plain: dict[str, Any] = {}
        if cfg.side_by_side and cfg.adaptive and defense.name != "none":
            for name in cfg.attacks:  # an attack the defense changes nothing of is its own non-adaptive run
                options = attack_options(cfg, name, defense, adaptive=False)
                plain[name] = results[name] if options == results[name]["options"] else \
                    self.attack(name, defense, views, others=others, adaptive=False)
        # The adaptive attacker knows the defense, so it may also run the plain variants: its battery
        # holds both, and it is never weaker than the non-adaptive attacker.
        battery = {**results, **{f"{n} (non-adaptive)": r for n, r in plain.items() if r is not results[n]}}
        attack_seconds = time.perf_counter() - start
        worst = worst_case(battery, metric=self.metric)
        row = {
            "defense": defense.spec,
            "client_accuracy": history[-1],
            **worst["summary"],
            "truth_attacker_accuracy": self.judge(torch.cat(worst["truths"]), torch.cat([t.labels for _, t in views])),
            "epsilon": epsilon_training,  # DP-SGD: the worst client's budget spent in the utility run
            "epsilon_release": defense.describe().get("epsilon_release"),  # one attacked release on its own
            "attack": worst["attack"],
            "attack_options": battery[worst["attack"]]["options"],
            "worst_case_attacks": worst["counts"],
            "attacks": {name: {**r["summary"], "options": r["options"]} for name, r in battery.items()},
            "adaptive": cfg.adaptive,
            "attacker_knowledge": defense.knowledge if cfg.adaptive else "architecture, weights and protocol (non-adaptive)",
            "victims": cfg.victims,
            "samples_per_update": defense.batch_size(cfg.batch_size),
            "accuracy_history": history,
            "train_seconds": train_seconds,
            "attack_seconds": attack_seconds,
            "details": defense.describe(),
            **self.rero(model, defense, views, others, successes=worst["identified"]).record(),
            **attacker_pick(battery),
        }
        if plain:
            naive = worst_case(plain, metric=self.metric)
            row.update({f"non_adaptive_{k}": v for k, v in naive["summary"].items()})
            row["non_adaptive_attack"] = naive["attack"]
            row.update({f"non_adaptive_{k}": v for k, v in attacker_pick(plain).items()})
        return DefenseOutcome(row=row, truth=worst["truths"], reconstruction=worst["reconstructions"])

    def others(self, indices: torch.Tensor, *, victim: int) -> torch.Tensor:
        """(B, n - 1, ...) further candidates per private sample for the identification game
        (:mod:`.rero`): clients' samples outside the victim's batch, same for every defense."""
        pool_x = torch.cat([c[0] for c in self.splits.clients])
        allowed = torch.ones(len(pool_x), dtype=torch.bool)
        allowed[indices] = False
        rest = torch.nonzero(allowed).flatten()
        gen = torch.Generator().manual_seed(self.config.seed * 1000 + 11 + victim)
        n = self.config.rero_candidates - 1
        picks = torch.stack([rest[torch.randperm(len(rest), generator=gen)[:n]] for _ in range(len(indices))])
        return pool_x[picks]

    def rero(self, model: torch.nn.Module, defense: Defense, views: Sequence[tuple[Observation, GroundTruth]],
             others: Sequence[torch.Tensor], *, successes: int) -> ReRoCheck:
        """The strongest attack's identification success beside the defense's ReRo bound."""
        from ..fl.protocol import client_update

        def candidate_updates() -> list[list[dict[str, torch.Tensor]]]:
            slots = []
            for (obs, truth), rest in zip(views, others):
                for i in range(len(truth.inputs)):
                    slot = []
                    for c in torch.cat([truth.inputs[i:i + 1], rest[i]]):
                        x = truth.inputs.clone()
                        x[i] = c
                        slot.append(client_update(model, inputs=x, labels=truth.labels, protocol=obs.protocol))
                    slots.append(slot)
            return slots

        mu, how = defense.gdp_mu(protocol=views[0][0].protocol, candidate_updates=candidate_updates)
        trials = sum(len(t.inputs) for _, t in views)
        return ReRoCheck(successes=successes, trials=trials, kappa=1.0 / self.config.rero_candidates, mu=mu, method=how)

    def attack(self, name: str, defense: Defense, views: Sequence[tuple[Observation, GroundTruth]], *,
               others: Sequence[torch.Tensor], adaptive: bool | None = None) -> dict[str, Any]:
        """Run attack ``name`` on every victim's observation; scores after Hungarian assignment,
        and each reconstruction's update mismatch (the attacker's criterion)."""
        cfg = self.config
        options = attack_options(cfg, name, defense, adaptive=adaptive)
        attack = create_attack(name, **options)
        entries = mismatch_entries(defense)
        records, truths, recons = [], [], []
        for v, (observation, truth) in enumerate(views):
            recon = attack.run(observation, generator=torch.Generator().manual_seed(cfg.seed * 1000 + v), device=cfg.device)
            metrics = evaluate(recon, truth, observation=observation)
            aligned = self.visible(recon.inputs)[torch.as_tensor(metrics["assignment"])]
            metrics["attacker_accuracy"] = self.judge(aligned, truth.labels)
            metrics["mismatch"] = update_mismatch(observation, recon.inputs, recon.labels, entries=entries)
            metrics["identified"] = int(identified(aligned, truth.inputs, others[v]).sum())
            records.append(metrics)
            truths.append(truth.inputs)
            recons.append(aligned)
            self.progress("victim", 1)
        return {"summary": _summary(records, SCORES), "options": options, "truths": truths, "reconstructions": recons,
                "records": records}

    def owner(self, index: int) -> int:
        """The client whose shard holds sample ``index`` of the concatenated client data."""
        for client, (_, labels) in enumerate(self.splits.clients):
            if index < len(labels):
                return client
            index -= len(labels)
        raise IndexError("sample index beyond the clients' data")

    def observe(self, model: torch.nn.Module, spec: ModelSpec, defense: Defense, *,
                generator: torch.Generator, choose: torch.Generator, victim: int = 0) -> tuple[Observation, GroundTruth]:
        """One victim's defended update of the trained model (client 0's decoder for perturb).

        The victim's first sample has class ``victim mod classes`` (the victims cover the classes
        evenly, so always guessing the majority class does not score as attacker accuracy); the
        rest follow a random permutation of the clients' data.
        """
        cfg = self.config
        n = defense.batch_size(cfg.batch_size)
        pool_x = torch.cat([c[0] for c in self.splits.clients])
        pool_y = torch.cat([c[1] for c in self.splits.clients])
        perm = torch.randperm(len(pool_y), generator=choose)
        wanted = torch.nonzero(pool_y[perm] == victim % self.data.num_classes).flatten()
        first = int(wanted[0]) if len(wanted) else 0
        idx = torch.cat([perm[first:first + 1], perm[:first], perm[first + 1:]])[:n]
        x, y = pool_x[idx], pool_y[idx]
        model.eval()
        params = {k: v.detach().clone() for k, v in model.named_parameters()}
        buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
        protocol = defense.protocol(cfg.protocol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            update = defense.shared_update(model, inputs=x, labels=y, protocol=protocol, generator=generator,
                                           client=self.owner(int(idx[0])))  # its decoder (perturb), its accountant
        if hasattr(model, "sampling"):
            model.sampling = False
        observation = Observation(
            model=spec, parameters=params, buffers=buffers, train_mode=False, protocol=protocol, update=update,
            num_samples=n, labels=None, defense=defense.describe(),
            data={"dataset": self.data.name, "kind": self.data.kind, "min": 0.0, "max": float(self.data.data_range),
                  "class_names": list(self.data.class_names),
                  # records: the column layout and the attacker's own column statistics (its split, never the clients')
                  **({"schema": self.data.meta["schema"], "prior": column_statistics(self.splits.attacker[0])}
                     if self.records else {})},
        )
        return observation, GroundTruth(inputs=x, labels=y, indices=idx)


def worst_case(results: dict[str, dict[str, Any]], *, metric: str = "psnr") -> dict[str, Any]:
    """The defender's worst case: per attacked update, the attack whose reconstruction scores the
    highest ``metric`` (PSNR; records: feature accuracy) against the private samples (ties: the order
    of ``results``). Chosen with the private data, so an upper bound on what the attacker can select
    (always >= its pick)."""
    names = list(results)
    chosen, counts, truths, recons, hits = [], {n: 0 for n in names}, [], [], 0
    for v in range(len(results[names[0]]["records"])):
        name = max(names, key=lambda n: _score(results[n]["records"][v].get(metric)))
        counts[name] += 1
        record = results[name]["records"][v]
        chosen.append(record)
        truths.append(results[name]["truths"][v])
        recons.append(results[name]["reconstructions"][v])
        hits += record.get("identified", 0)
    counts = {n: c for n, c in counts.items() if c}
    return {"summary": _summary(chosen, SCORES), "attack": max(counts, key=counts.get), "counts": counts,
            "truths": truths, "reconstructions": recons, "identified": hits}


def attacker_pick(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``pick_*`` scores: per attacked update, the attack whose reconstruction has the lowest
    update mismatch (ties: the order of ``results``), then mean +- std over the updates."""
    names = list(results)
    victims = len(results[names[0]]["records"])
    chosen, counts = [], {n: 0 for n in names}
    for v in range(victims):
        name = min(names, key=lambda n: results[n]["records"][v].get("mismatch", math.inf))
        counts[name] += 1
        chosen.append(results[name]["records"][v])
    out = {f"pick_{k}": v for k, v in _summary(chosen, PICK_SCORES).items()}
    out["pick_mismatch"] = _summary(chosen, ("mismatch",))["mismatch"]
    out["pick_attacks"] = {n: c for n, c in counts.items() if c}
    return out


def _score(value: float | None) -> float:
    return -math.inf if value is None else value


def _summary(records: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """Mean and sample standard deviation over the victims (finite values only)."""
    out: dict[str, Any] = {}
    for k in keys:
        values = [float(r[k]) for r in records if r.get(k) is not None]
        finite = [v for v in values if math.isfinite(v)]
        mean = sum(finite) / len(finite) if finite else None
        std = (math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else 0.0) \
            if finite else None
        out[k], out[f"{k}_std"] = mean, std
    return out


def check_specs(specs: Sequence[str], *, attack: str | Sequence[str]) -> list[Defense]:
    """Parse every spec and attack name before any long work (bad input fails fast)."""
    for name in [attack] if isinstance(attack, str) else attack:
        ATTACKS.get(name)
    if not specs:
        raise GradleakError("give at least one defense spec")
    return [parse_defense(s) for s in specs]


def check_config(specs: Sequence[str], config: DefendConfig) -> None:
    """Everything that can be refused before training: specs, attacks, their options, sizes."""
    defenses = check_specs(specs, attack=config.attacks)
    if config.victims < 1 or config.batch_size < 1 or config.reference_steps < 0:
        raise GradleakError("victims and batch size must be >= 1 and reference steps >= 0")
    if config.rero_candidates < 2:
        raise GradleakError(f"rero_candidates must be >= 2 (kappa = 1/n), got {config.rero_candidates}")
    known = set().union(*(_fields(a) for a in config.attacks))
    unknown = sorted(set(config.attack_options) - known)
    if unknown:
        raise GradleakError(f"unknown attack option(s) {', '.join(unknown)} for {', '.join(config.attacks)}")
    data = load_dataset(config.dataset, data_root=config.data_root, image_size=config.image_size,
                        grayscale=config.grayscale)
    spec = complete_spec(ModelSpec(name=config.model, input_shape=data.input_shape, num_classes=data.num_classes,
                                   options=dict(config.model_options)))
    for defense in defenses:  # a model the mechanism cannot protect (e.g. BatchNorm under DP-SGD)
        defense.check_model(create_model(defense.model_spec(spec)))
    for name in config.attacks:  # bad option values fail here, with the attack's own message
        for defense in defenses:
            create_attack(name, **attack_options(config, name, defense))


def evaluate_outcomes(
    specs: Sequence[str], *, config: DefendConfig, progress: Progress = lambda _s, _n: None,
) -> tuple[Evaluator, list[DefenseOutcome]]:
    """The evaluator (split, reference classifier) and one outcome per spec, in order."""
    check_config(specs, config)
    evaluator = Evaluator(config, progress=progress)
    outcomes = []
    for spec in specs:
        outcome = evaluator.run(spec)
        outcome.row["reference_accuracy"] = evaluator.reference_accuracy
        outcomes.append(outcome)
    return evaluator, outcomes


def evaluate_defenses(
    specs: Sequence[str], *, config: DefendConfig | None = None, quick: bool = False,
    progress: Progress = lambda _s, _n: None,
) -> list[dict[str, Any]]:
    """One JSON-able row per defense spec (see module docstring); ``quick`` shrinks the budget."""
    config = config or DefendConfig()
    config = quick_config(config) if quick else config
    return [o.row for o in evaluate_outcomes(specs, config=config, progress=progress)[1]]


def battery_for(config: DefendConfig, defense: Defense) -> list[str]:
    """The adaptive attacker's attacks against ``defense``: the config's, then the ones the defense
    itself names (e.g. a decoder trained by the attacker against the latent perturbation)."""
    extra = [a for a in defense.extra_attacks if a not in config.attacks] if config.adaptive else []
    return [*config.attacks, *extra]


def attack_runs(spec: str, config: DefendConfig) -> list[str]:
    """The attack runs per victim against ``spec``: each attack, then each one the non-adaptive
    comparison runs again (only those whose options adapting changes)."""
    defense = parse_defense(spec)
    runs = battery_for(config, defense)
    if config.side_by_side and config.adaptive and defense.name != "none":
        runs += [a for a in config.attacks
                 if attack_options(config, a, defense, adaptive=False) != attack_options(config, a, defense)]
    return runs


def work_units(specs: Sequence[str], config: DefendConfig) -> int:
    """Progress units of an evaluation: FedAvg rounds plus attack runs, over all specs."""
    return sum(config.federated.rounds + config.victims * len(attack_runs(s, config)) for s in specs)
