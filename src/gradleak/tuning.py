"""Bayesian optimisation of an attack's prior weights, on batches the attacker simulates itself.

The medical replication study chose its regularizer weights (temporal TV, binary constraint,
nuclear norm) by Bayesian optimisation. Doing that fairly means the attacker may only use data
it owns: here every trial runs the attack on client rounds simulated from the attacker's own
split (``test`` by default; clients hold ``train``), scores the reconstructions against those
known records (log10 FMSE, mean over batches), and Optuna proposes the next weights. The
sampler is Optuna's TPE (Tree-structured Parzen Estimator, default) or its Gaussian-process
sampler (``gp``); both are seeded, so a run is reproducible. The best weights, plus the column
statistics of the attacker's data (the Gaussian prior), go to a JSON file the ``tabular``
attack reads with ``weights_file=...``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .attacks import create_attack
from .attacks.tabular import WEIGHT_FIELDS, WEIGHTS_FORMAT
from .data import load_dataset
from .data.schema import RECORD_KINDS, RecordSchema, column_statistics
from .errors import GradleakError
from .metrics.tabular import evaluate_records
from .registry import Registry
from .scenario import Scenario, simulate


@dataclass
class TuneConfig:
    trials: int = 20  # Optuna trials (the study does not say; 20 finds the right order of magnitude)
    batches: int = 2  # simulated client batches per trial (averaging smooths a lucky draw)
    sampler: str = "tpe"  # "tpe" (Tree-structured Parzen Estimator) or "gp" (Gaussian process)
    low: float = 1e-8  # smallest weight tried (log scale; ~0 in effect)
    high: float = 1.0  # largest weight tried
    seed: int = 0  # seeds the sampler and the simulated batches
    # random trials before the sampler's model proposes; None = trials // 3 (at least 2, at most 10).
    # Optuna's own default is 10, which turns a budget of 10 trials or fewer into pure random search.
    startup: int | None = None

    @property
    def startup_trials(self) -> int:
        return self.startup if self.startup is not None else min(10, max(2, self.trials // 3))

    def __post_init__(self) -> None:
        SAMPLERS.get(self.sampler)
        if self.startup is not None and self.startup < 1:
            raise GradleakError(f"startup must be >= 1, got {self.startup}")
        if self.trials < 1 or self.batches < 1:
            raise GradleakError(f"trials and batches must be >= 1, got {self.trials} and {self.batches}")
        if not 0 < self.low < self.high or not math.isfinite(self.high):
            raise GradleakError(f"need 0 < low < high, got low={self.low} high={self.high}")


CLIENT_SPLITS = ("train", "all")  # splits that hold (or include) the simulated clients' records

SAMPLERS: Registry[Callable[[int, int], Any]] = Registry("sampler")  # (seed, random start-up trials) -> sampler


@SAMPLERS.register("tpe", description="Tree-structured Parzen Estimator (Optuna's default)")
def _tpe(seed: int, startup: int) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


@SAMPLERS.register("gp", description="Gaussian-process Bayesian optimisation (Optuna GPSampler)")
def _gp(seed: int, startup: int) -> Any:
    import optuna

    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise GradleakError("tuning needs Optuna: pip install 'gradleak[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def tune(
    scenario: Scenario,
    *,
    attack: str = "tabular",
    attack_options: dict[str, Any] | None = None,
    config: TuneConfig | None = None,
    progress: Callable[[int], None] = lambda _n: None,
) -> dict[str, Any]:
    """Search regularizer weights; returns the JSON-able weights file content (with all trials)."""
    if attack != "tabular":
        raise GradleakError(f"tuning is implemented for the 'tabular' attack only, got {attack!r}")
    config = config or TuneConfig()
    if scenario.split in CLIENT_SPLITS:
        raise GradleakError(f"tuning runs on the attacker's own split (test or val), not {scenario.split!r}: "
                            "clients hold train, and tuning on their records would be an oracle")
    options = dict(attack_options or {})
    fixed = sorted(set(options) & set(WEIGHT_FIELDS))
    if fixed or "weights_file" in options:
        raise GradleakError(f"do not fix {', '.join(fixed) or 'weights_file'} when tuning them")
    create_attack(attack, **options)  # bad options fail before any simulation
    own = load_dataset(scenario.dataset, data_root=scenario.data_root, split=scenario.split)
    if own.kind not in RECORD_KINDS:
        raise GradleakError(f"dataset {scenario.dataset!r} holds {own.kind} data; tuning needs health records")
    schema = RecordSchema.from_json(own.meta["schema"])
    rounds = [simulate(dataclasses.replace(scenario, seed=config.seed * 1000 + b)) for b in range(config.batches)]
    optuna = _optuna()
    study = optuna.create_study(direction="minimize", sampler=SAMPLERS.get(config.sampler)(config.seed, config.startup_trials))
    names = [n for n in WEIGHT_FIELDS if not (n == "tv_weight" and schema.time_steps is None)]  # no time axis

    def objective(trial: Any) -> float:
        weights = {n: trial.suggest_float(n, config.low, config.high, log=True) for n in names}
        scores = []
        for b, (observation, truth) in enumerate(rounds):
            run = create_attack(attack, **options, **weights)
            rec = run.run(observation, generator=torch.Generator().manual_seed(config.seed + b))
            fmse = evaluate_records(reconstruction=rec.inputs, truth=truth.inputs, schema=schema)["fmse"]
            scores.append(math.log10(max(fmse, 1e-30)))
        progress(1)
        return sum(scores) / len(scores)

    study.optimize(objective, n_trials=config.trials)
    best = {n: float(study.best_params[n]) for n in names}
    best.update({n: 0.0 for n in WEIGHT_FIELDS if n not in names})
    return {
        "format": WEIGHTS_FORMAT,
        "weights": best,
        "prior": column_statistics(own.inputs),
        "best_log10_fmse": float(study.best_value),
        "sampler": config.sampler,
        "startup_trials": config.startup_trials,
        "tune_config": dataclasses.asdict(config),
        "attack_options": options,
        "scenario": scenario.to_json(),
        "trials": [{"number": t.number, "params": t.params, "log10_fmse": t.value} for t in study.trials],
    }
