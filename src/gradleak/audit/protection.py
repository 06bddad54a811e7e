"""The audit's defense sweep: what each defense buys in privacy and costs in accuracy.

A thin layer over :class:`gradleak.defenses.evaluation.Evaluator` (the engine of ``gradleak
defend``) with the budget's small settings: a short FedAvg run per defense for the client
accuracy, then an adaptive attacker on a few defended updates of the trained model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .battery import PLANS
from .progress import AuditProgress
from .settings import AuditSettings


@dataclass
class DefenseSweep:
    rows: list[dict[str, Any]]  # one JSON row per defense (gradleak defend's columns)
    truth: torch.Tensor | None  # the victims' private samples (the same for every defense)
    reconstructions: list[torch.Tensor]  # per defense, aligned with ``truth``
    attacks: tuple[str, ...]  # the attacks run against every defense (each row reports the stronger)
    config: dict[str, Any]  # DefendConfig as JSON
    reference_accuracy: float | None  # the attacker's judge on the test split


def sweep_attacks(rows: Sequence[dict[str, Any]], *, max_weight: float, second: str = "ig") -> tuple[str, ...]:
    """The attacks the defense sweep runs: the attacker's pick at the worst-case batch size, and IG.

    ``rows``: the battery summary at that batch size. The pick is the attack the attacker chose
    most often (ties: lower mean update mismatch), if it is closed-form or costs at most
    ``max_weight`` units per iteration (the budget's cap: an L-BFGS attack adapted to noise
    takes many restarts); IG (cosine matching, adaptive to noise and pruning) is always added.
    Each defense row reports the stronger of the two: the defender's worst case.
    """
    def allowed(r: dict[str, Any]) -> bool:
        plan = PLANS.get(r["attack"]) if r["attack"] in PLANS else None
        return plan is not None and r.get("mismatch") is not None and plan.kind != "generative" and (
            plan.kind == "closed-form" or plan.weight <= max_weight)

    candidates = [r for r in rows if allowed(r)]
    if not candidates:
        return (second,)
    best = str(min(candidates, key=lambda r: (-r.get("chosen", 0), r["mismatch"], r["attack"]))["attack"])
    return (best,) if best == second else (best, second)


def defense_config(settings: AuditSettings, attacks: Sequence[str]):
    """The budget's :class:`DefendConfig` for this deployment."""
    from ..defenses.evaluation import DefendConfig, _fields
    from ..defenses.federated import FederatedConfig

    plan = settings.plan
    options: dict[str, Any] = {}
    if any("iterations" in _fields(a) for a in attacks):
        options["iterations"] = plan.defense_iterations
    return DefendConfig(
        dataset=settings.dataset, model=settings.model, attack=attacks[0], extra_attacks=tuple(attacks[1:]),
        attack_options=options,
        victims=plan.defense_victims, batch_size=min(settings.resolved_batch_sizes()),
        protocol=settings.protocol, federated=FederatedConfig(rounds=plan.defense_rounds),
        reference_steps=plan.reference_steps, seed=settings.seed, image_size=settings.image_size,
        grayscale=settings.grayscale, data_root=settings.data_root, device=settings.device,
    )


ROUND_UNITS = 20.0  # progress units per FedAvg round of the utility run (5 local steps x 4 clients)


def _units(settings: AuditSettings, attacks: Sequence[str]) -> tuple[float, float]:
    """(units per FedAvg round, units per attacked victim and attack run) of the sweep."""
    weights = [PLANS.get(a).weight * (1 if PLANS.get(a).kind == "closed-form" else settings.plan.defense_iterations)
               if a in PLANS else settings.plan.defense_iterations for a in attacks]
    return ROUND_UNITS, sum(weights) / len(weights)


def defense_units(settings: AuditSettings, attacks: Sequence[str], specs: Sequence[str]) -> float:
    """Planned cost of the sweep in progress units (reference classifier, rounds, attacks)."""
    from ..defenses.evaluation import attack_runs

    plan = settings.plan
    per_round, per_victim = _units(settings, attacks)
    config = defense_config(settings, attacks)
    return plan.reference_steps + sum(plan.defense_rounds * per_round
                                      + plan.defense_victims * len(attack_runs(s, config)) * per_victim for s in specs)


def defense_cell(config: Any, spec: str, shown: int, per_round: float, per_victim: float, *,
                 progress: Any) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor, dict[str, Any], float]:
    """One defense of the sweep in a fresh evaluator (a worker process): (row, truth, reconstruction
    of the first ``shown`` samples per victim, split description, reference accuracy). The
    evaluator is deterministic in the config's seed, so this equals the shared-evaluator run."""
    from ..defenses.evaluation import Evaluator

    evaluator = Evaluator(config)
    evaluator.progress = lambda stage, n: progress(round(n * (per_round if stage == "round" else per_victim)))
    outcome = evaluator.run(spec)
    outcome.row["reference_accuracy"] = evaluator.reference_accuracy
    truth, recon = outcome.first(shown)
    return outcome.row, truth, recon, evaluator.splits.describe(), evaluator.reference_accuracy


def defense_stage(settings: AuditSettings, specs: Sequence[str], *, attacks: Sequence[str],
                  progress: AuditProgress, workers: int = 1) -> DefenseSweep:
    """Run the sweep; each defense's row carries its accuracy, attack scores and knowledge.

    With ``workers`` > 1 the defenses run in parallel processes, each with its own (identical)
    evaluator: the reference classifier is trained once per defense instead of once in all.
    """
    from ..defenses.evaluation import Evaluator, attack_runs, check_config
    from .parallel import run_jobs

    config = defense_config(settings, attacks)
    check_config(specs, config)
    plan = settings.plan
    per_round, per_victim = _units(settings, attacks)
    if workers > 1 and len(specs) > 1:
        shown = min(settings.resolved_batch_sizes())
        units = [plan.reference_steps + plan.defense_rounds * per_round
                 + plan.defense_victims * len(attack_runs(s, config)) * per_victim for s in specs]
        spent = [0.0] * len(specs)
        with progress.task("defenses", f"{len(specs)} defenses on {workers} processes", units=sum(units)) as advance_all:
            def advance(j: int, n: int) -> None:
                step = min(n, units[j] - spent[j])
                if step > 0:
                    spent[j] += step
                    advance_all(step)

            results = run_jobs([(defense_cell, (config, s, shown, per_round, per_victim)) for s in specs],
                               workers=workers, advance=advance)
        rows = [r[0] for r in results]
        return DefenseSweep(rows=rows, truth=results[0][1], reconstructions=[r[2] for r in results],
                            attacks=tuple(attacks), config=config.to_json() | {"split": results[0][3]},
                            reference_accuracy=results[0][4])
    with progress.task("defenses", "attacker's reference classifier", units=plan.reference_steps):
        evaluator = Evaluator(config)
    rows, recons, truth = [], [], None
    shown = min(settings.resolved_batch_sizes())
    for spec in specs:
        units = plan.defense_rounds * per_round + plan.defense_victims * len(attack_runs(spec, config)) * per_victim
        with progress.task("defenses", spec, units=units) as advance:
            evaluator.progress = lambda stage, n: advance(round(n * (per_round if stage == "round" else per_victim)))
            outcome = evaluator.run(spec)
        outcome.row["reference_accuracy"] = evaluator.reference_accuracy
        rows.append(outcome.row)
        first_truth, first_recon = outcome.first(shown)
        truth = first_truth if truth is None else truth
        recons.append(first_recon)
    return DefenseSweep(rows=rows, truth=truth, reconstructions=recons, attacks=tuple(attacks),
                        config=config.to_json() | {"split": evaluator.splits.describe()},
                        reference_accuracy=evaluator.reference_accuracy)


def with_cost(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ``accuracy_cost`` and ``psnr_drop`` relative to the undefended row."""
    base = next((r for r in rows if r["defense"] == "none"), None)
    out = []
    for r in rows:
        r = dict(r)
        if base is not None and r.get("client_accuracy") is not None and base.get("client_accuracy") is not None:
            r["accuracy_cost"] = base["client_accuracy"] - r["client_accuracy"]
        if base is not None and r.get("psnr") is not None and base.get("psnr") is not None:
            r["psnr_drop"] = base["psnr"] - r["psnr"]
        out.append(r)
    return out

