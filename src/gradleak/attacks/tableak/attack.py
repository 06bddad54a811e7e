"""``tableak``: record inversion for mixed-type tables at realistic batch sizes.

After TabLeak (Vero et al., "TabLeak: Tabular Data Leakage in Federated Learning", ICML 2023):
every ensemble member matches the observed update (cosine distance, Adam) through the softmax
relaxation of :mod:`.relax` with a falling temperature; the projected members are matched to
each other sample by sample and pooled (:mod:`.pool`), which also gives a confidence for every
variable of every record. Where the model's first layer is a linear+ReLU, SPEAR is tried first
(:mod:`.exact`): a fully certified batch is returned as is, certified records replace their
closest pooled record otherwise. Among the candidates (pooled, best single member, SPEAR,
pooled with SPEAR's certified records) the lowest gradient loss wins: the attacker never sees
the truth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ...data.schema import RecordSchema, build_schema
from ...errors import GradleakError
from ...metrics.matching import pairwise_mse
from ...observation import Observation
from ..base import Attack, Progress, Reconstruction, register_attack
from ..labels import recover_labels
from ..loop import LoopSettings, optimise
from ..objective import DISTANCES, GradientMatcher
from ..optimisation import PRECISIONS
from ..tabular import torch_threads
from .exact import try_spear
from ..record_pool import pool
from .relax import RelaxedRecords, Temperature

SELECTIONS = ("loss", "pooled")  # how the output is chosen among the candidates
EXACT_MODES = ("auto", "off")  # "auto": try SPEAR first where the model has a first linear+ReLU layer


@dataclass
class TabLeakConfig:
    members: int = 8  # independent reconstructions pooled into one (TabLeak's ensemble; 1 = no pooling)
    iterations: int = 1000  # Adam steps per member
    lr: float = 0.2  # Adam step size on values and logits, cosine-annealed (gbsg2 b32, 4 x 300 steps: 0.2 > 0.05 > 0.5 > 0.01)
    temperature_start: float = 1.0  # softmax/sigmoid temperature of the first step
    temperature_end: float = 0.1  # ... and of the last (geometric schedule)
    distance: str = "cosine"  # gradient distance (cosine: scale-free, the record attack's best)
    box_std: float = 4.0  # continuous box when the attacker lacks min/max: mean +- box_std std
    spread_scale: float = 0.1  # continuous confidence exp(-spread / spread_scale); 0.1 std = the accuracy tolerance
    select: str = "loss"  # "loss": lowest gradient loss among the candidates; "pooled": always the pooled record
    exact: str = "auto"  # "auto": SPEAR first when a first linear+ReLU layer exists; "off": optimisation only
    spear_trials: int = 32_768  # SPEAR's sub-matrices per sampling round (its default)
    precision: str = "float32"  # compute dtype of the gradient matching
    threads: int = 1  # torch CPU threads (0 = torch's setting); record-sized ops run best on one

    def __post_init__(self) -> None:
        DISTANCES.get(self.distance)  # unknown names raise, listing the valid ones
        if self.precision not in PRECISIONS:
            raise GradleakError(f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}")
        for name in ("members", "iterations", "spear_trials"):
            if int(getattr(self, name)) < 1:
                raise GradleakError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.select not in SELECTIONS:
            raise GradleakError(f"unknown select {self.select!r}; choose one of: {', '.join(SELECTIONS)}")
        if self.exact not in EXACT_MODES:
            raise GradleakError(f"unknown exact {self.exact!r}; choose one of: {', '.join(EXACT_MODES)}")
        for name in ("temperature_start", "temperature_end", "box_std", "spread_scale", "lr"):
            value = float(getattr(self, name))
            if not (value > 0 and value != float("inf")):
                raise GradleakError(f"{name} must be a positive finite number, got {getattr(self, name)}")
        if int(self.threads) < 0:
            raise GradleakError(f"threads must be >= 0 (0 = torch's setting), got {self.threads}")


def _schema(observation: Observation) -> RecordSchema:
    raw = observation.data.get("schema")
    if raw is not None:
        return RecordSchema.from_json(raw)
    return build_schema([(f"column {i}", "continuous", ()) for i in range(observation.input_shape[-1])],
                        time_steps=None)


def _prior(observation: Observation, *, columns: int, box_std: float) -> tuple[torch.Tensor, ...]:
    """The attacker's per-column mean, std and box (its own data's min/max where known)."""
    stats = observation.data.get("prior") or {}
    mean = torch.as_tensor(stats.get("mean", [0.0] * columns), dtype=torch.float64)
    std = torch.as_tensor(stats.get("std", [1.0] * columns), dtype=torch.float64).clamp(min=0)
    if mean.shape != (columns,) or std.shape != (columns,):
        raise GradleakError(f"prior statistics must have {columns} entries, got {tuple(mean.shape)}")
    lower = torch.as_tensor(stats["min"], dtype=torch.float64) if "min" in stats else mean - box_std * std
    upper = torch.as_tensor(stats["max"], dtype=torch.float64) if "max" in stats else mean + box_std * std
    return mean, std, lower, upper


@register_attack("tableak", description="TabLeak: softmax relaxation, pooled ensemble, confidence per feature; SPEAR first")
class TabLeak(Attack):
    Config = TabLeakConfig
    attacker_knowledge = ("architecture, weights and protocol of the round; the column layout and per-column "
                          "statistics of the attacker's own records")

    def total_iterations(self) -> int:
        return int(self.config.members) * int(self.config.iterations)

    def reconstruct(self, observation: Observation, *, generator: torch.Generator, device: torch.device,
                    progress: Progress) -> Reconstruction:
        with torch_threads(self.config.threads):
            return self._reconstruct(observation, generator=generator, device=device, progress=progress)

    def _reconstruct(self, observation: Observation, *, generator: torch.Generator, device: torch.device,
                     progress: Progress) -> Reconstruction:
        cfg = self.config
        schema = _schema(observation)
        notes: list[str] = []
        exact = try_spear(observation, generator=generator, trials=cfg.spear_trials) if cfg.exact == "auto" else None
        if exact is not None:
            notes.append(exact.note)
            if exact.complete and exact.reconstruction is not None:
                progress(self.total_iterations())
                return self._pack(exact.reconstruction.inputs, exact.reconstruction.labels, schema=schema,
                                  confidence=None, losses={"spear": exact.reconstruction.gradient_loss},
                                  chosen="spear", traces=[], notes=notes + ["all records certified by spear"],
                                  label_method=exact.reconstruction.label_method,
                                  certified=exact.certified)
        matcher = GradientMatcher(observation, distance=cfg.distance, device=device, dtype=PRECISIONS[cfg.precision])
        estimate = recover_labels(observation, model=matcher.model, generator=generator)
        y = estimate.labels.to(matcher.device)
        members, losses, traces = self._members(observation, schema=schema, matcher=matcher, labels=y,
                                                generator=generator, progress=progress)
        best = min(range(len(losses)), key=lambda i: _finite(losses[i]))  # by gradient loss, never the truth
        pooled = pool(members, schema=schema, reference=best, spread_scale=cfg.spread_scale)
        candidates = {"pooled": pooled.records, "best member": members[best]}
        confidence = {"pooled": pooled.confidence, "best member": pooled.confidence}
        certified = torch.zeros(observation.num_samples, dtype=torch.bool)
        slots = torch.zeros(0, dtype=torch.long)
        if exact is not None and exact.reconstruction is not None and bool(exact.certified.any()):
            hybrid, slots = _with_certified(pooled.records, exact.reconstruction.inputs.double(), exact.certified)
            conf = pooled.confidence.clone()
            conf[slots] = 1.0
            candidates["pooled + spear"] = hybrid
            confidence["pooled + spear"] = conf
        scores = {name: matcher.loss_value(x.to(matcher.device, matcher.dtype), y) for name, x in candidates.items()}
        chosen = "pooled" if cfg.select == "pooled" else min(scores, key=lambda k: _finite(scores[k]))
        if chosen == "pooled + spear":
            certified[slots] = True
        notes.append("gradient loss of the candidates: " + ", ".join(f"{k} {v:.3e}" for k, v in scores.items())
                     + f"; chosen: {chosen}")
        return self._pack(candidates[chosen], y.cpu(), schema=schema, confidence=confidence[chosen],
                          losses={**{f"member {i}": v for i, v in enumerate(losses)}, **scores}, chosen=chosen,
                          traces=traces, notes=notes, label_method=estimate.method,
                          certified=certified if bool(certified.any()) else None)

    def _members(self, observation: Observation, *, schema: RecordSchema, matcher: GradientMatcher,
                 labels: torch.Tensor, generator: torch.Generator,
                 progress: Progress) -> tuple[list[torch.Tensor], list[float], list[list[float]]]:
        cfg = self.config
        shape = (observation.num_samples, *observation.input_shape)
        mean, std, lower, upper = _prior(observation, columns=shape[-1], box_std=cfg.box_std)
        relax = RelaxedRecords(schema=schema, lower=lower, upper=upper)
        schedule = Temperature(start=cfg.temperature_start, end=cfg.temperature_end, steps=cfg.iterations)
        settings = LoopSettings(optimizer="adam", iterations=cfg.iterations, lr=cfg.lr, anneal="cosine")
        members, losses, traces = [], [], []
        for _ in range(cfg.members):
            z = relax.initial(shape=shape, mean=mean, std=std, generator=generator)
            z = z.to(matcher.device, matcher.dtype).requires_grad_(True)
            step = [0]

            def objective(z: torch.Tensor = z, step: list[int] = step) -> torch.Tensor:
                relax.clamp_(z)
                t = schedule.at(step[0])
                step[0] += 1
                return matcher(relax.relaxed(z, temperature=t), labels)

            traces.append(optimise(objective=objective, variables=[z], settings=settings, progress=progress))
            relax.clamp_(z)
            hard = relax.project(z.detach())
            members.append(hard.double().cpu())
            losses.append(matcher.loss_value(hard, labels))
        return members, losses, traces

    def _pack(self, inputs: torch.Tensor, labels: torch.Tensor, *, schema: RecordSchema,
              confidence: torch.Tensor | None, losses: dict[str, float], chosen: str, traces: list[list[float]],
              notes: list[str], label_method: str, certified: torch.Tensor | None) -> Reconstruction:
        member_losses = [float(v) for k, v in losses.items() if k.startswith("member ")]
        if confidence is None:  # spear's exact batch: certified records are sure, the rest unknown
            shape = (*inputs.shape[:-1], len(schema.features))
            cert = certified if certified is not None else torch.zeros(inputs.shape[0], dtype=torch.bool)
            confidence = cert.double().reshape(-1, *([1] * (len(shape) - 1))).expand(shape).clone()
        return Reconstruction(
            inputs=inputs.detach().cpu().float(), labels=labels.detach().cpu().long(), attack=self.name,
            config=dataclasses.asdict(self.config), label_method=label_method, loss_trace=min(traces, key=lambda t: t[-1]) if traces else [],
            # every member's loss and trace, then the chosen output's loss (a one-point trace)
            restart_losses=[*member_losses, float(losses[chosen])], restart_traces=[*traces, [float(losses[chosen])]],
            chosen_restart=len(member_losses), iterations=self.config.iterations, notes=notes,
            certified=certified, confidence=confidence.detach().cpu().float(),
        )


def _finite(value: float) -> float:
    return value if value == value and value != float("inf") else float("inf")


def _with_certified(records: torch.Tensor, exact: torch.Tensor, certified: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled records with each certified exact record in place of its closest pooled one."""
    sure = exact[certified].to(records)
    cost = pairwise_mse(sure, records).numpy()  # certified x pooled
    from scipy.optimize import linear_sum_assignment  # lazy: listing attacks must not pay for scipy

    rows, cols = linear_sum_assignment(cost)
    slots = torch.as_tensor(cols[rows.argsort()], dtype=torch.long)  # slots[i]: pooled record of certified i
    out = records.clone()
    out[slots] = sure
    return out, slots
