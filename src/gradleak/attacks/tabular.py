"""Gradient inversion of health records (tables and 48 x 76 ICU time series).

The medical replication study's attack: gradient matching from either a *naive* start
(standard normal, learning rate decayed linearly; the baseline of Jeon et al.) or a *prior*
start (a Gaussian with the attacker's own per-column mean and variance, cosine-annealed
learning rate), with the loss

    L(x) = D(update(x), observed) + a_TV R_TV(x) + a_BC R_BC(x) + a_NN R_NN(x)

(temporal total variation, binary constraint on the 0/1 columns, nuclear norm of each record
matrix), Adam at lr 0.01. At the end one-hot groups are projected to one-hot and binary
columns to {0, 1}; restarts are ranked by the gradient loss of the projected record.

Mode *sequence* is ours, for recurrent victims (GRU/LSTM over the 48 hours): a GRU's update
depends on the early hours through a backward signal that decays ~1e6x over 48 steps, so the
update barely constrains them and Adam crawls. It starts near the prior's mean, runs L-BFGS in
float64 on a smoothed temporal TV whose weight is divided by 10 in each of 4 stages: the strong
prior first carries what the late hours reveal back over the early ones, the weak ones let the
gradient refine what it does constrain.

Weights come from the config, else from a ``gradleak tune`` file (``weights_file``), else (mode
``prior``, ``shipped=True``) from the weights gradleak ships for the observation's data set and
model (``tabular_weights/*.json``: tuned by ``gradleak tune`` on the attacker's own split at
batch 1), else from the mode's defaults. Everything the attack uses is in the observation: the column layout
(``data['schema']``) and the prior statistics (``data['prior']``) are the server's public
knowledge of the domain, never the client's records.
"""

from __future__ import annotations

import functools
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..data.schema import RecordSchema
from ..errors import GradleakError
from ..models.base import ModelSpec
from ..observation import Observation
from ..registry import Registry
from .base import Progress, Reconstruction, register_attack
from .labels import LabelEstimate
from .loop import Candidate, LoopSettings, optimise
from .objective import GradientMatcher
from .optimisation import OptimisationAttack, check_common, stop_rule
from .record_pool import pool

WEIGHTS_FORMAT = "gradleak.tabular-weights"
WEIGHT_FIELDS = ("tv_weight", "binary_weight", "nuclear_weight")
# Defaults per mode. Naive: the study's baseline row (TV 0.1 only). Prior: the study's best
# Bayesian-optimised row (TV 1.4e-4, no binary constraint, nuclear norm 1e-5), used where no tuned
# weights are shipped (SHIPPED); on ihm-synthetic they over-regularize (benchmarks/results/tabular_table.md).
# Sequence (recurrent victims on time series): a start near the prior's mean, L-BFGS in float64 and a
# smoothed temporal TV relaxed in 4 stages (benchmarks/results/gru_records/: similarity 0.48 with the
# prior mode's Adam, far higher with this; the early hours barely move a GRU's update, the prior fills them).
_ADAM = {"optimizer": "adam", "start_scale": 1.0, "stages": 1, "iterations": 5000, "lr": 0.01,
         "precision": "float32", "tv_eps": 0.0}
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "naive": {"tv_weight": 0.1, "binary_weight": 0.0, "nuclear_weight": 0.0, "anneal": "linear", **_ADAM},
    "prior": {"tv_weight": 1.4e-4, "binary_weight": 0.0, "nuclear_weight": 1e-5, "anneal": "cosine", **_ADAM},
    "sequence": {"tv_weight": 0.2, "binary_weight": 0.0, "nuclear_weight": 0.0, "anneal": "none",
                 "optimizer": "lbfgs", "start_scale": 0.1, "stages": 4, "iterations": 80, "lr": 1.0,
                 "precision": "float64", "tv_eps": 1e-4},
}
MODE_FIELDS = ("anneal", "optimizer", "start_scale", "stages", "iterations", "lr", "precision", "tv_eps")  # None = the mode's
PRIOR_MODES = ("prior", "sequence")  # modes that start from the attacker's Gaussian prior
SHIPPED = Path(__file__).resolve().parent / "tabular_weights"  # <dataset>_<model>.json, tuned at batch 1


@dataclass
class TabularConfig:
    # "prior" (Gaussian start from own statistics, Adam, cosine lr), "naive" (randn, linear lr; the
    # study's baseline) or "sequence" (recurrent victims: prior mean, L-BFGS, staged temporal prior)
    mode: str = "prior"
    iterations: int | None = None  # steps per restart; None = the mode's (Adam 5000 as the study; sequence: 80 L-BFGS steps)
    lr: float | None = None  # step size; None = the mode's (Adam 0.01 as the study; L-BFGS 1 with line search)
    anneal: str | None = None  # "cosine" | "linear" | "none"; None = the mode's (prior: cosine, naive: linear)
    distance: str = "cosine"  # gradient distance; "l2" (the study's, see the paper-* rows of tabular_table.md) stalls
    tv_weight: float | None = None  # temporal total variation; None = tune file, else shipped, else mode default
    binary_weight: float | None = None  # binary constraint on one-hot and mask columns; None = as tv_weight
    nuclear_weight: float | None = None  # nuclear norm of each record matrix; None = as tv_weight
    weights_file: str | None = None  # JSON written by `gradleak tune` with tuned weights (and prior)
    # mode prior: weights neither set nor in weights_file come from the file gradleak ships for the
    # observation's data set and model (tuned on the attacker's own split at batch 1), if there is one
    shipped: bool = True
    project: bool = True  # end with one-hot groups one-hot and binary columns in {0, 1}
    restarts: int = 1  # independent starts; the lowest (projected) gradient loss wins
    entries: str = "all"  # which update entries to match: all, top-layers:K, largest:F, nonzero
    precision: str | None = None  # compute dtype "float32" or "float64"; None = the mode's (sequence: float64)
    # torch CPU threads during the attack (0 = leave torch's setting). Record-sized steps are small
    # ops: on the shared 2-core machine one thread ran the ihm MLP at 6-8 ms/step, two at 94-98.
    threads: int = 1
    # A plateau (best loss down by less than tol, relative, over this many steps) anneals the rest of the
    # lr schedule within as many steps again, then stops. 0 runs all iterations.
    patience: int = 250
    tol: float = 1e-2  # progress: the best loss fell by more than this fraction within `patience` iterations
    # "adam" (the study's) or "lbfgs" (DLG's: `iterations` outer steps of up to 20 evaluations);
    # None = the mode's. On a recurrent victim the early hours move the update ~1e6x less than the
    # last ones and Adam crawls; L-BFGS does not.
    optimizer: str | None = None
    # start = prior mean + start_scale * std * N(0, 1) (naive: start_scale * N(0, 1)); None = the mode's
    # (1: a draw from the prior; sequence: 0.1, near the mean but with the batch's samples distinct:
    # from one shared start a batch of 4 stayed symmetric and ended below the prior mode)
    start_scale: float | None = None
    # continuation: the run is split into `stages` equal parts, the regularizer weights divided by
    # `stage_decay` after each part (a strong prior first fills what the update barely constrains,
    # then weaker ones let the gradient refine what it does constrain); None = the mode's
    stages: int | None = None
    stage_decay: float = 10.0
    # temporal TV as sum sqrt(d^2 + tv_eps) (Charbonnier; 0 = plain |d|): L-BFGS needs a smooth
    # objective (|d| cost the GRU 0.05 of similarity); None = the mode's (sequence: 1e-4)
    tv_eps: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODE_DEFAULTS:
            raise GradleakError(f"unknown mode {self.mode!r}; choose one of: {', '.join(MODE_DEFAULTS)}")
        for name in MODE_FIELDS:
            if getattr(self, name) is None:
                setattr(self, name, MODE_DEFAULTS[self.mode][name])
        check_common(self)
        tuned = read_weights(Path(self.weights_file))["weights"] if self.weights_file else {}
        self._sources = {}  # where each weight came from (not a field: stays out of asdict)
        for name in WEIGHT_FIELDS:
            if getattr(self, name) is not None:
                self._sources[name] = "option"
            elif name in tuned or not self.uses_shipped:
                setattr(self, name, float(tuned.get(name, MODE_DEFAULTS[self.mode][name])))
                self._sources[name] = "weights_file" if name in tuned else f"{self.mode} default"
            if getattr(self, name) is None:
                continue  # resolved per observation (shipped_weights)
            value = float(getattr(self, name))
            if not value >= 0 or value == float("inf"):
                raise GradleakError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if int(self.threads) < 0:
            raise GradleakError(f"threads must be >= 0 (0 = torch's setting), got {self.threads}")
        if not (float(self.start_scale) >= 0.0 and float(self.start_scale) < float("inf")):
            raise GradleakError(f"start_scale must be a finite number >= 0, got {self.start_scale}")
        if not 1 <= int(self.stages) <= int(self.iterations):
            raise GradleakError(f"stages must be between 1 and iterations ({self.iterations}), got {self.stages}")
        if not (float(self.stage_decay) >= 1.0 and float(self.stage_decay) < float("inf")):
            raise GradleakError(f"stage_decay must be a finite number >= 1, got {self.stage_decay}")
        if not (float(self.tv_eps) >= 0.0 and float(self.tv_eps) < float("inf")):
            raise GradleakError(f"tv_eps must be a finite number >= 0, got {self.tv_eps}")
        LoopSettings(optimizer=self.optimizer, iterations=self.iterations, lr=self.lr, anneal=self.anneal)  # validates

    @property
    def uses_shipped(self) -> bool:
        return self.mode == "prior" and bool(self.shipped)

    def weights_for(self, observation: Observation) -> tuple[dict[str, float], str]:
        """The regularizer weights for ``observation`` and where each came from."""
        sources = dict(self._sources)
        missing = [n for n in WEIGHT_FIELDS if getattr(self, n) is None]
        path = shipped_weights(dataset=str(observation.data.get("dataset")), model=observation.model.name) \
            if missing else None
        found = read_weights(path)["weights"] if path is not None else {}
        for name in missing:
            sources[name] = (f"shipped {path.name}, tuned on the attacker's own split at batch 1" if name in found
                             else "the study's best weights: nothing shipped for this data set and model")
        weights = {n: float(getattr(self, n) if getattr(self, n) is not None
                            else found.get(n, MODE_DEFAULTS[self.mode][n])) for n in WEIGHT_FIELDS}
        return weights, "; ".join(f"{n} from {sources[n]}" for n in WEIGHT_FIELDS)


def shipped_weights(*, dataset: str, model: str) -> Path | None:
    """The shipped tune file for ``dataset`` and ``model``, if gradleak has one (names from an
    observation file are only looked up, never joined into a path)."""
    return {p.stem: p for p in SHIPPED.glob("*.json")}.get(f"{dataset}_{model}")


def read_weights(path: Path) -> dict[str, Any]:
    """A tune result: ``{"format": ..., "weights": {...}, "prior": {...} | null}``."""
    try:
        content = json.loads(path.read_text())
    except OSError as exc:
        raise GradleakError(f"cannot read weights file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise GradleakError(f"{path} is not valid JSON") from None
    if not isinstance(content, dict) or content.get("format") != WEIGHTS_FORMAT:
        raise GradleakError(f"{path} is not a {WEIGHTS_FORMAT} file (write one with `gradleak tune`)")
    weights = content.get("weights")
    if not isinstance(weights, dict) or set(weights) - set(WEIGHT_FIELDS):
        raise GradleakError(f"{path}: 'weights' must map some of {', '.join(WEIGHT_FIELDS)} to numbers")
    from ..validation import as_column_statistics, as_float

    for name, value in weights.items():
        as_float(value, what=f"{path}: weights {name}", minimum=0.0)
    if content.get("prior") is not None:
        as_column_statistics(content["prior"], what=f"{path}: prior")
    return content


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with ``count`` torch threads (0: unchanged), restoring the previous setting after."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ regularizers
@dataclass(frozen=True)
class RecordLayout:
    """Column masks the regularizers and the projection need, on the search's device."""

    binary: torch.Tensor  # bool per column: one-hot and binary columns
    flags: torch.Tensor  # bool per column: plain binary columns (masks)
    groups: list[tuple[int, int]]  # one-hot groups

    @classmethod
    def from_schema(cls, schema: RecordSchema | None, *, columns: int, device: torch.device) -> "RecordLayout":
        if schema is None:
            none = torch.zeros(columns, dtype=torch.bool, device=device)
            return cls(binary=none, flags=none, groups=[])
        return cls(binary=schema.column_mask("binary", "categorical").to(device),
                   flags=schema.column_mask("binary").to(device), groups=schema.groups())


Regularizer = Callable[[torch.Tensor, RecordLayout], torch.Tensor]
REGULARIZERS: Registry[Regularizer] = Registry("regularizer")


@REGULARIZERS.register("tv_weight", description="temporal total variation: mean |x[t+1] - x[t]|")
def temporal_tv(x: torch.Tensor, layout: RecordLayout, *, eps: float = 0.0) -> torch.Tensor:
    """Vitals change slowly and imputation repeats values: neighbouring hours should agree.

    ``eps > 0``: the smooth ``sqrt(d^2 + eps)`` instead of ``|d|`` (for L-BFGS)."""
    if x.ndim < 3:  # flat rows have no time axis
        return x.new_zeros(())
    d = x[:, 1:] - x[:, :-1]
    return (d.square() + eps).sqrt().mean() if eps > 0 else d.abs().mean()


@REGULARIZERS.register("binary_weight", description="binary constraint: mean |x (1 - x)| on 0/1 columns")
def binary_constraint(x: torch.Tensor, layout: RecordLayout) -> torch.Tensor:
    """Zero exactly at 0 and 1: pulls one-hot and mask columns towards valid values."""
    if not bool(layout.binary.any()):
        return x.new_zeros(())
    b = x[..., layout.binary]
    return (b * (1 - b)).abs().mean()


@REGULARIZERS.register("nuclear_weight", description="nuclear norm of each T x F record (flat rows: the batch)")
def nuclear_norm(x: torch.Tensor, layout: RecordLayout) -> torch.Tensor:
    """Low rank: the columns of a record move together (few underlying physiological states)."""
    matrices = x if x.ndim == 3 else x.unsqueeze(0)
    return torch.linalg.matrix_norm(matrices, ord="nuc").mean()


def project(x: torch.Tensor, layout: RecordLayout) -> torch.Tensor:
    """One-hot groups to the arg-max category, binary columns to {0, 1}."""
    out = x.clone()
    for start, stop in layout.groups:
        block = out[..., start:stop]
        out[..., start:stop] = torch.nn.functional.one_hot(block.argmax(-1), stop - start).to(out.dtype)
    out[..., layout.flags] = (out[..., layout.flags] > 0.5).to(out.dtype)
    return out


ENSEMBLE_BATCH = 8  # from this batch size on, a flat table gets ENSEMBLE_RESTARTS restarts by default
ENSEMBLE_RESTARTS = 4  # ... whose agreement tells the attacker which values to trust


def restart_agreement(members: list[torch.Tensor], *, schema: RecordSchema, chosen: int) -> torch.Tensor:
    """Confidence per variable of restart ``chosen``'s records: the restarts, matched to its samples,
    vote as in TabLeak's pooling (:mod:`.record_pool`); their agreement is the confidence."""
    out = pool(members, schema=schema, reference=chosen, spread_scale=CONTINUOUS_SPREAD)
    return out.confidence.float()


CONTINUOUS_SPREAD = 0.1  # continuous confidence exp(-spread / 0.1): 0.1 std is the accuracy tolerance


def recurrent(spec: ModelSpec) -> bool:
    """Whether the victim reads records through a GRU/LSTM (the ``sequence`` mode's victims)."""
    from ..models import create_model  # deferred: building the victim is only needed here

    return any(isinstance(m, torch.nn.RNNBase) for m in create_model(spec).modules())


def observation_schema(observation: Observation) -> RecordSchema | None:
    raw = observation.data.get("schema")
    return None if raw is None else RecordSchema.from_json(raw)


# ---------------------------------------------------------------------- attack
@register_attack("tabular", description="health records: naive or Gaussian-prior start, TV/binary/nuclear priors")
class TabularAttack(OptimisationAttack):
    Config = TabularConfig

    @classmethod
    def victim_options(cls, observation: Observation, options: dict[str, Any]) -> dict[str, Any]:
        """Recurrent victims get mode ``sequence`` unless the user chose a mode or its schedule; flat
        tables at batch :data:`ENSEMBLE_BATCH` or more get :data:`ENSEMBLE_RESTARTS` restarts (unless the
        user chose ``restarts``), whose agreement is the confidence per variable."""
        suggested: dict[str, Any] = {}
        is_recurrent = recurrent(observation.model)
        if not any(k in options for k in ("mode", *MODE_FIELDS)) and is_recurrent:
            suggested["mode"] = "sequence"
        if "restarts" not in options and not is_recurrent and observation.num_samples >= ENSEMBLE_BATCH:
            suggested["restarts"] = ENSEMBLE_RESTARTS
        return suggested

    def reconstruct(self, observation: Observation, *, generator: torch.Generator, device: torch.device,
                    progress: Progress) -> Reconstruction:
        self.weights, source = self.config.weights_for(observation)
        self._members: list[torch.Tensor] = []
        with torch_threads(self.config.threads):
            rec = super().reconstruct(observation, generator=generator, device=device, progress=progress)
        rec.config.update(self.weights)
        rec.notes.append("regularizer weights " + ", ".join(f"{n} {v:.3g}" for n, v in self.weights.items())
                         + f" ({source})")
        schema = observation_schema(observation)
        if len(self._members) > 1 and schema is not None and rec.chosen_restart is not None:
            rec.confidence = restart_agreement(self._members, schema=schema, chosen=rec.chosen_restart)
            rec.notes.append(f"confidence per variable: agreement of the {len(self._members)} restarts with the chosen "
                             "one (entropy of category votes, spread of continuous values)")
        return rec

    def loop_settings(self, observation: Observation) -> LoopSettings:
        cfg = self.config
        per_stage = max(1, cfg.iterations // cfg.stages)
        anneal = cfg.anneal if cfg.optimizer == "adam" else "none"  # L-BFGS sets its own step by line search
        return LoopSettings(optimizer=cfg.optimizer, iterations=per_stage, lr=cfg.lr, anneal=anneal,
                            stop=stop_rule(cfg), line_search="strong_wolfe" if cfg.optimizer == "lbfgs" else None)

    def prior(self, observation: Observation, *, columns: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-column mean and std: from the tune file if it has them, else the observation's."""
        stats = None
        if self.config.weights_file:
            stats = read_weights(Path(self.config.weights_file)).get("prior")
        stats = stats or observation.data.get("prior")
        if not stats:
            raise GradleakError("mode 'prior' needs the attacker's column statistics (observation data 'prior' "
                                "or a weights_file from `gradleak tune`); use mode=naive otherwise")
        mean = torch.as_tensor(stats["mean"], dtype=torch.float64)
        std = torch.as_tensor(stats["std"], dtype=torch.float64)
        if mean.shape != (columns,) or std.shape != (columns,) or not bool(torch.isfinite(mean).all() & torch.isfinite(std).all()):
            raise GradleakError(f"prior statistics must be {columns} finite means and stds, got {tuple(mean.shape)}")
        return mean, std.clamp(min=0)

    def start(self, observation: Observation, *, generator: torch.Generator, matcher: GradientMatcher) -> torch.Tensor:
        shape = (observation.num_samples, *observation.input_shape)
        noise = torch.randn(shape, generator=generator, dtype=torch.float64)
        if self.config.mode in PRIOR_MODES:
            mean, std = self.prior(observation, columns=shape[-1])
            noise = mean + std * noise * float(self.config.start_scale)
        else:
            noise = noise * float(self.config.start_scale)
        return noise.to(matcher.device, matcher.dtype).requires_grad_(True)

    def search(
        self, observation: Observation, *, matcher: GradientMatcher, labels: LabelEstimate | None,
        generator: torch.Generator, progress: Progress,
    ) -> Candidate:
        assert labels is not None
        y = labels.labels.to(matcher.device)
        layout = RecordLayout.from_schema(observation_schema(observation), columns=observation.input_shape[-1],
                                          device=matcher.device)
        x = self.start(observation, generator=generator, matcher=matcher)
        terms = self.terms(layout)
        settings, trace = self.loop_settings(observation), []
        for stage in range(self.config.stages):
            scale = float(self.config.stage_decay) ** -stage

            def objective() -> torch.Tensor:
                loss = matcher(x, y)
                for weight, term in terms:
                    loss = loss + scale * weight * term(x)
                return loss

            trace += optimise(objective=objective, variables=[x], settings=settings, progress=progress)
        final = project(x.detach(), layout) if self.config.project else x.detach()
        if hasattr(self, "_members"):
            self._members.append(final.cpu())
        return Candidate(final, y, self.score(matcher, final, y), trace)

    def terms(self, layout: RecordLayout) -> list[tuple[float, Callable[[torch.Tensor], torch.Tensor]]]:
        """(weight, x -> regularizer) for every weight in use, bound once outside the search loop."""
        options = {"tv_weight": {"eps": float(self.config.tv_eps)}}  # the smoothing only TV has
        return [(weight, functools.partial(REGULARIZERS.get(name), layout=layout, **options.get(name, {})))
                for name, weight in self.weights.items() if weight]
