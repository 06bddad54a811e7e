"""Common frame of the optimisation attacks: restarts of a gradient-matching search.

Subclasses say how one restart searches (:meth:`search`); this class builds the matcher,
recovers labels when the attack uses analytic labels, runs the restarts, scores each restart
by its final gradient-matching loss (never the ground truth) and packs the result.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from typing import Any

import torch

from ..errors import GradleakError
from ..observation import Observation
from .base import Attack, Progress, Reconstruction
from .bn_prior import with_bn_prior
from .labels import LabelEstimate, recover_labels
from .loop import Candidate, LoopSettings, StopRule, best_of_restarts, optimise
from .objective import DISTANCES, GradientMatcher, parse_entries


def data_box(observation: Observation) -> tuple[float, float]:
    """The valid input range the attacker knows from the data domain ([0, 1] for images)."""
    return float(observation.data.get("min", 0.0)), float(observation.data.get("max", 1.0))


PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


def check_common(cfg: Any) -> None:
    """Validate the fields the optimisation attacks share, so bad values fail before a run."""
    DISTANCES.get(cfg.distance)
    parse_entries(getattr(cfg, "entries", "all"))
    if cfg.precision not in PRECISIONS:
        raise GradleakError(f"unknown precision {cfg.precision!r}; choose one of: {', '.join(PRECISIONS)}")
    for name in ("iterations", "restarts"):
        if int(getattr(cfg, name)) < 1:
            raise GradleakError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    stop_rule(cfg)  # validates patience and tol


def stop_rule(cfg: Any) -> StopRule:
    """The config's stopping rule (``patience``, ``tol``; configs without them never stop early)."""
    return StopRule(patience=getattr(cfg, "patience", 0), tol=getattr(cfg, "tol", StopRule.tol))


def random_inputs(observation: Observation, *, generator: torch.Generator, matcher: GradientMatcher) -> torch.Tensor:
    """Uniform random start inside the data box, drawn from the attack's generator."""
    lo, hi = data_box(observation)
    x = torch.rand((observation.num_samples, *observation.input_shape), generator=generator)
    return (lo + (hi - lo) * x).to(matcher.device, matcher.dtype).requires_grad_(True)


class OptimisationAttack(Attack):
    """Restarts of :meth:`search`, the best one chosen by gradient-matching loss."""

    analytic_labels: bool = True  # False: the attack learns labels itself (DLG)

    def reconstruct(
        self, observation: Observation, *, generator: torch.Generator, device: torch.device, progress: Progress
    ) -> Reconstruction:
        cfg = self.config
        matcher = GradientMatcher(
            observation, distance=cfg.distance, device=device, dtype=PRECISIONS[cfg.precision],
            entries=getattr(cfg, "entries", "all"),
        )
        estimate = (
            recover_labels(observation, model=matcher.model, generator=generator) if self.analytic_labels else None
        )
        # R_BN after label recovery: the prior must only see the search's own forwards
        matcher, bn_note = with_bn_prior(matcher, observation, weight=getattr(cfg, "bn_weight", 0.0),
                                         source=getattr(cfg, "bn_stats", "auto"))
        result = self.restarts(observation, matcher=matcher, estimate=estimate, generator=generator, progress=progress)
        result.notes += [bn_note] if bn_note else []
        return result

    def restarts(
        self, observation: Observation, *, matcher: Any, estimate: LabelEstimate | None,
        generator: torch.Generator, progress: Progress,
    ) -> Reconstruction:
        """Run the configured restarts with ``matcher`` (a :class:`GradientMatcher` or one that
        wraps it) and fixed labels ``estimate``; keep the lowest gradient loss."""
        cfg = self.config
        if self.runs_batched(observation, matcher=matcher, estimate=estimate):
            candidates = self.batched_search(observation, matcher=matcher, labels=estimate, generator=generator,
                                             progress=progress)
        else:
            candidates = [
                self.search(observation, matcher=matcher, labels=estimate, generator=generator, progress=progress)
                for _ in range(cfg.restarts)
            ]
        best = best_of_restarts(candidates)
        chosen = candidates[best]
        inputs, notes = chosen.inputs.detach().cpu().float(), []
        if not bool(torch.isfinite(inputs).all()):  # every restart diverged: the attacker sees it and guesses
            lo, hi = data_box(observation)
            inputs = torch.where(torch.isfinite(inputs), inputs, torch.full_like(inputs, (lo + hi) / 2))
            notes.append("every restart diverged (non-finite values); those entries are the data range's midpoint")
        return Reconstruction(
            inputs=inputs,
            labels=chosen.labels.detach().cpu().long(),
            attack=self.name,
            config=dataclasses.asdict(cfg),
            label_method=estimate.method if estimate is not None else "joint-optimisation",
            loss_trace=chosen.trace,
            restart_losses=[c.loss for c in candidates],
            restart_traces=[c.trace for c in candidates],
            chosen_restart=best,
            iterations=cfg.iterations,
            notes=notes,
        )

    def batched_objective(self, matcher: GradientMatcher, labels: torch.Tensor) -> Any:
        """``inputs -> objective`` as a pure function for vmap over restarts; None: not supported."""
        return None

    def runs_batched(self, observation: Observation, *, matcher: Any, estimate: LabelEstimate | None) -> bool:
        """Restarts as one vmapped problem (:mod:`.batched`): asked for, several restarts, fixed
        labels, the plain matcher, and a model and loop the batched form reproduces."""
        from .batched import batchable

        return (getattr(self.config, "batched_restarts", False) and self.config.restarts > 1 and estimate is not None
                and type(matcher) is GradientMatcher and type(self).search is OptimisationAttack.search
                and self.batched_objective(matcher, estimate.labels) is not None
                and batchable(observation, matcher.model, self.loop_settings(observation)))

    def batched_search(
        self, observation: Observation, *, matcher: GradientMatcher, labels: LabelEstimate,
        generator: torch.Generator, progress: Progress,
    ) -> list[Candidate]:
        """Every restart at once; the same random starts, schedule and stopping as :meth:`search`."""
        from torch.func import grad_and_value, vmap

        from .batched import batched_adam

        y = labels.labels.to(matcher.device)
        x = torch.stack([random_inputs(observation, generator=generator, matcher=matcher).detach()
                         for _ in range(self.config.restarts)])
        step = vmap(grad_and_value(self.batched_objective(matcher, y)))
        traces = batched_adam(step=step, x=x, settings=self.loop_settings(observation), progress=progress)
        return [Candidate(x[r].detach(), y, self.score(matcher, x[r], y), traces[r]) for r in range(len(traces))]

    @staticmethod
    def score(matcher: GradientMatcher, inputs: torch.Tensor, labels: torch.Tensor) -> float:
        """Gradient-matching loss of the final candidate: what restarts are ranked by."""
        return matcher.loss_value(inputs.detach(), labels.detach())

    def search(
        self,
        observation: Observation,
        *,
        matcher: GradientMatcher,
        labels: LabelEstimate | None,
        generator: torch.Generator,
        progress: Progress,
    ) -> Candidate:
        """One restart over the data with fixed (analytic or shared) labels."""
        assert labels is not None, "attacks that learn labels override search()"
        y = labels.labels.to(matcher.device)
        x = random_inputs(observation, generator=generator, matcher=matcher)
        trace = optimise(
            objective=lambda: self.objective(matcher, x, y), variables=[x], boxed=[x],
            settings=self.loop_settings(observation), progress=progress,
        )
        return Candidate(x.detach(), y, self.score(matcher, x, y), trace)

    def objective(self, matcher: GradientMatcher, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """What the search minimises: the gradient distance, plus any prior the attack adds."""
        return matcher(inputs, labels)

    @abstractmethod
    def loop_settings(self, observation: Observation) -> LoopSettings: ...
