"""``run_audit``: every stage in order, one progress bar, one atomic output directory.

Stages: (1) rank analysis of the model; (2) one simulated client round per (batch size,
seed); (3) label recovery; (4) the attack battery on every round; (5) the defense sweep;
then the verdict, ``results.json`` and the self-contained ``report.html``. All input is
checked before the first long step, so a typo fails in a second with one line.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .. import __version__
from ..data import load_dataset
from ..errors import GradleakError
from ..models import complete_spec
from ..models.base import ModelSpec
from ..outdir import atomic_directory, write_json
from .battery import Entry, Setup, battery
from .buffers import buffer_leak
from .kinds import kind_of
from .leakage import Trial, attack_stage, attack_units, runs_at, attacker_curve, label_stage, summarise, worst_case
from .progress import AuditProgress
from .protection import defense_stage, defense_units, sweep_attacks, with_cost
from .settings import SMALL_MODEL, AuditSettings
from .structure import rank_stage

THREATS = ("honest", "malicious")  # audit threat models: malicious adds the crafted-model section
SIMULATION_UNITS = 5.0  # progress units per simulated client round (the first one also loads data)


def _environment() -> dict[str, Any]:
    import numpy

    return {"gradleak": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": numpy.__version__, "platform": platform.platform(), "threads": torch.get_num_threads()}


def _threads(settings: AuditSettings, spec: ModelSpec) -> int:
    if settings.threads is not None:
        return settings.threads
    from ..models import count_parameters, create_model

    return 1 if count_parameters(create_model(spec)) < SMALL_MODEL else torch.get_num_threads()


def _workers(settings: AuditSettings, threads: int) -> int:
    """Battery processes: one per core for one-thread models whose registrations a spawned worker
    has (gradleak's own, or loaded by ``--plugin``); a model registered only in the caller's
    script stays in this process."""
    from ..data import DATASETS
    from ..models import MODELS
    from .parallel import PLUGINS, available_cores, builtin

    if settings.workers is not None:
        return settings.workers
    known = PLUGINS or (builtin(settings.model, MODELS) and builtin(settings.dataset, DATASETS))
    return available_cores() if threads == 1 and settings.device == "cpu" and known else 1


def usable_defenses(settings: AuditSettings, spec: ModelSpec, specs: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(specs the model can take, {spec: why not} for the budget's defaults it cannot).

    A defense the user named that cannot protect this model is an error (exit 2); one that only
    came with the budget (e.g. DP-SGD on a BatchNorm model) is left out and the report says why.
    """
    from ..defenses.base import parse_defense
    from ..errors import GradleakError
    from ..models import create_model

    kept, skipped = [], {}
    for s in specs:
        defense = parse_defense(s)
        try:
            defense.check_model(create_model(defense.model_spec(spec)))
        except GradleakError as error:
            if settings.defenses is not None:
                raise
            skipped[s] = str(error)
            continue
        kept.append(s)
    return kept, skipped


def check(settings: AuditSettings) -> tuple[AuditSettings, Any, ModelSpec, list[Entry], list[str]]:
    """Validate everything cheap to validate; returns (settings with the data kind's defaults filled in,
    dataset, model spec, battery, defense specs)."""
    budget = settings.plan  # unknown budget names list the valid ones
    if settings.batch_sizes is not None and any(b < 1 for b in settings.batch_sizes):
        raise GradleakError(f"batch sizes must be >= 1, got {list(settings.batch_sizes)}")
    if settings.seeds is not None and settings.seeds < 1:
        raise GradleakError(f"--seeds must be >= 1, got {settings.seeds}")
    if settings.threads is not None and settings.threads < 1:
        raise GradleakError(f"--threads must be >= 1, got {settings.threads}")
    if settings.workers is not None and settings.workers < 1:
        raise GradleakError(f"--workers must be >= 1, got {settings.workers}")
    if settings.threat not in THREATS:
        raise GradleakError(f"unknown threat {settings.threat!r}; choose one of: {', '.join(THREATS)}")
    if settings.trained_steps < 0:
        raise GradleakError(f"--trained-steps must be >= 0, got {settings.trained_steps}")
    data = load_dataset(settings.dataset, data_root=settings.data_root, image_size=settings.image_size,
                        grayscale=settings.grayscale)
    kind = kind_of(data.kind)
    settings = dataclasses.replace(
        settings, model=settings.model or kind.default_model,
        batch_sizes=settings.batch_sizes or (kind.batch_sizes or {}).get(budget.name))
    sizes = settings.resolved_batch_sizes()
    if max(sizes) > len(data):
        raise GradleakError(f"batch size {max(sizes)} exceeds the {len(data)} samples of {settings.dataset!r}")
    spec = complete_spec(ModelSpec(name=settings.model, input_shape=data.input_shape, num_classes=data.num_classes,
                                   options=dict(settings.model_options)))
    if settings.prior is not None:
        from ..priors import read_prior_info

        read_prior_info(settings.prior)
    specs = settings.resolved_defenses()
    if specs:
        from ..defenses.evaluation import check_specs

        check_specs(specs, attack=kind.sweep_attack)
        specs, _ = usable_defenses(settings, spec, specs)
    entries = battery(Setup(spec=spec, protocol=settings.protocol, data_kind=data.kind, prior=settings.prior,
                            budget=budget), only=settings.attacks)
    return settings, data, spec, entries, specs


def _exclusion(settings: AuditSettings, entries: Sequence[Entry]):
    """Client batches avoid the attacker's own split when an attack uses the attacker's data."""
    from ..attacks import ATTACKS

    if not any(e.skipped is None and getattr(ATTACKS.get(e.name), "uses_attacker_data", False) for e in entries):
        return None, None
    from ..priors import attacker_data

    split = attacker_data(settings.dataset, data_root=settings.data_root, image_size=settings.image_size,
                          grayscale=settings.grayscale)
    return split.client_exclusion, split.rule


def run_audit(settings: AuditSettings, *, out: str | Path, show_progress: bool = True,
              command: Sequence[str] | None = None) -> dict[str, Any]:
    """Audit the deployment described by ``settings``; writes ``out`` atomically; returns results.json."""
    from ..scenario import simulate

    settings, data, spec, entries, specs = check(settings)
    kind = kind_of(data.kind)
    sizes, seeds = settings.resolved_batch_sizes(), settings.resolved_seeds()
    runnable = [e for e in entries if e.skipped is None]
    planned = (len(sizes) * len(seeds) * SIMULATION_UNITS + settings.trained_steps * len(sizes) * len(seeds)
               + sum(attack_units(e, b) for e in runnable for b in sizes for _ in seeds
                     if runs_at(e, b, settings.plan.iterative_max_batch))
               + (defense_units(settings, kind.sweep_guess, specs) if specs else 0))
    progress = AuditProgress(total=planned, enabled=show_progress)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    threads_before = torch.get_num_threads()
    threads = _threads(settings, spec)
    torch.set_num_threads(threads)
    workers = _workers(settings, threads)
    try:
        with atomic_directory(out) as tmp:
            clock = time.perf_counter()
            with progress.task("model", "rank analysis", units=0):
                rank = rank_stage(spec)
            timings["rank"] = time.perf_counter() - clock

            clock = time.perf_counter()
            exclude, split_rule = _exclusion(settings, entries)
            trials = []
            for b in sizes:
                for s in seeds:
                    with progress.task("clients", f"simulate batch {b}, seed {s}",
                                       units=SIMULATION_UNITS + settings.trained_steps) as advance:
                        observation, truth = simulate(settings.scenario(batch_size=b, seed=s), progress=advance,
                                                      exclude=exclude)
                    trials.append(Trial(b, s, observation, truth))
            timings["simulate"] = time.perf_counter() - clock

            clock = time.perf_counter()
            with progress.task("labels", "analytic label recovery", units=0):
                labels = label_stage(trials)
            timings["labels"] = time.perf_counter() - clock

            clock = time.perf_counter()
            attacks = attack_stage(trials, entries, progress=progress, device=settings.device,
                                   max_iterative_batch=settings.plan.iterative_max_batch, workers=workers)
            summary, curve = summarise(attacks.records), attacker_curve(attacks.records)
            buffers = buffer_leak([t.observation for t in trials])
            bound = worst_case(summary, metric=kind.metric, also=kind.also)
            timings["attacks"] = time.perf_counter() - clock
            baseline = kind.baseline([t for t in trials if t.batch_size == sizes[0]], data)

            sweep = None
            if specs:
                clock = time.perf_counter()
                chosen = sweep_attacks([r for r in summary if r["batch_size"] == sizes[0]],
                                       max_weight=settings.plan.defense_max_weight, second=kind.sweep_attack)
                progress.add(defense_units(settings, chosen, specs) - defense_units(settings, kind.sweep_guess, specs))
                sweep = defense_stage(settings, specs, attacks=chosen, progress=progress, workers=workers)
                timings["defenses"] = time.perf_counter() - clock
            defense_rows = with_cost(sweep.rows) if sweep else []
            malicious = None
            if settings.threat == "malicious":
                clock = time.perf_counter()
                from .malicious import malicious_stage

                with progress.task("malicious", "crafted model (imprint), with and without secure aggregation",
                                   units=0):
                    malicious = malicious_stage(settings, spec, sizes=sizes)
                timings["malicious"] = time.perf_counter() - clock
            malicious_picture = malicious.pop("_picture") if malicious else None
            result = {
                "command": "audit", "version": __version__, "argv": list(command or []),
                "settings": settings.to_json(), "budget": dataclasses.asdict(settings.plan),
                "model": spec.to_json(), "dataset": {"name": data.name, "source": data.source, "samples": len(data),
                                                     "shape": list(data.input_shape), "classes": list(data.class_names)},
                "data_kind": data.kind, "schema": data.meta.get("schema"),
                "verdict": kind.verdict(curve=curve, worst=bound, labels=labels, baseline=baseline, rank=rank,
                                        defenses=defense_rows, dataset=settings.dataset, malicious=malicious,
                                        summary=summary, buffers=buffers),
                "rank": rank, "labels": labels, "buffers": buffers, "battery": [e.to_json() for e in entries],
                "attacks": {"records": attacks.records, "summary": summary, "attacker_choice": curve,
                            "worst_case": bound},
                "blind_guess_psnr": baseline, "client_split": split_rule,
                "defenses": None if sweep is None else {"attacks": list(sweep.attacks), "rows": defense_rows,
                                                        "skipped": usable_defenses(settings, spec,
                                                                                   settings.resolved_defenses())[1],
                                                        "config": sweep.config,
                                                        "reference_accuracy": sweep.reference_accuracy},
                "malicious": malicious, "timings": timings, "environment": _environment(),
            }
            with progress.task("report", "pictures and report.html", units=0):
                result["timings"]["total"] = time.perf_counter() - started
                kind.report(tmp, result=result, pictures=attacks.pictures, confidence=attacks.confidence, sweep=sweep,
                            malicious_picture=malicious_picture)
                write_json(tmp / "results.json", result)
    finally:
        progress.close()
        torch.set_num_threads(threads_before)
    return result

