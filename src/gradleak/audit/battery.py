"""Which attacks an audit runs, with which options: one plan per attack of the registry.

A :class:`Plan` says what kind of attack it is, whether it applies to the audited setup
(and why not), and its options under a budget. The battery is every registered attack that
has a plan and applies; attacks registered without a plan are listed in the report as "not
planned", so a new attack is never silently ignored. Nothing here looks at private data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from ..attacks import ATTACKS
from ..data.schema import RECORD_KINDS
from ..errors import GradleakError
from ..fl.protocol import Protocol
from ..models.base import ModelSpec
from ..registry import Registry
from .budget import Budget


@dataclass(frozen=True)
class Setup:
    """What the attacker knows about the audited deployment (all public to the server)."""

    spec: ModelSpec  # the global model's architecture
    protocol: Protocol  # what the clients compute
    data_kind: str  # "image", "tabular", "timeseries"
    prior: str | None  # a generator prior directory the user supplied, if any
    budget: Budget


@dataclass(frozen=True)
class Plan:
    """How the audit runs one attack."""

    kind: str  # "closed-form", "optimisation", "generative" or "hybrid" (shown in the report)
    # forward+backward passes one iteration costs (for the ETA), relative to one IG iteration
    weight: float = 1.0
    # a reason the attack does not apply to this setup, or None
    excluded: Callable[[Setup], str | None] = lambda _s: None
    options: Callable[[Setup], dict[str, Any]] = lambda _s: {}  # attack options under the setup's budget
    # runs at every batch size like a closed-form attack (the budget's iterative limit is for attacks whose
    # runs grow to minutes there and recover nothing; the record ensemble stays within a minute and still leaks)
    any_batch: bool = False

    def cost(self, setup: Setup, iterations: int) -> float:
        return self.weight * iterations


PLANS: Registry[Plan] = Registry("attack plan")


def _fields(name: str) -> set[str]:
    return {f.name for f in dataclasses.fields(ATTACKS.get(name).Config)}


def _iterative(name: str) -> Callable[[Setup], dict[str, Any]]:
    """Budget iterations (and restarts, where the attack has them) for attack ``name``."""

    def options(setup: Setup) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if name in setup.budget.iterations:
            out["iterations"] = setup.budget.iterations[name]
        if "restarts" in _fields(name) and setup.budget.restarts > 1:
            out["restarts"] = setup.budget.restarts
        return out

    return options


def _images_only(setup: Setup) -> str | None:
    if setup.data_kind in RECORD_KINDS:
        return f"an image attack; the audited data are {setup.data_kind} records"
    return None


def _rgap_excluded(setup: Setup) -> str | None:
    """R-GAP needs a chain of invertible layers and an update that is one gradient."""
    reason = _images_only(setup)
    if reason:
        return reason
    if setup.protocol.update_kind == "weight_delta" and (setup.protocol.local_epochs > 1
                                                         or setup.protocol.local_batch_size is not None):
        return "closed form needs a single gradient; the clients take several local steps"
    from ..analysis.chain import layer_chain
    from ..models import create_model

    try:
        layer_chain(create_model(setup.spec).eval(), input_shape=setup.spec.input_shape)
    except GradleakError as exc:
        return str(exc)
    return None


def _needs_prior(setup: Setup) -> str | None:
    reason = _images_only(setup)
    if reason:
        return reason
    return None if setup.prior else "needs a generator prior (pass --prior DIR, see `gradleak prior train`)"


def _prior_options(name: str) -> Callable[[Setup], dict[str, Any]]:
    base = _iterative(name)
    return lambda setup: {**base(setup), "prior": setup.prior}


def _thorough_only(why: str) -> Callable[[Setup], str | None]:
    def excluded(setup: Setup) -> str | None:
        return _images_only(setup) or (None if setup.budget.extended else f"{why}: thorough budget only")

    return excluded


def _spear_excluded(setup: Setup) -> str | None:
    """SPEAR needs a first linear layer with bias feeding a ReLU, and one gradient (or one local step)."""
    if setup.protocol.update_kind == "weight_delta" and (setup.protocol.local_epochs > 1
                                                         or setup.protocol.local_batch_size is not None):
        return "exact disaggregation needs a single gradient; the clients take several local steps"
    from ..attacks.spear.layer import linear_relu_layers
    from ..models import create_model

    layers = linear_relu_layers(create_model(setup.spec), setup.spec.input_shape)
    if not layers:
        return "the model has no linear layer with bias followed by a ReLU"
    if layers[0].depth > 0:
        return f"its first linear+ReLU layer ({layers[0].name}) reads features, not the data"
    return None


def _needs_batchnorm(setup: Setup) -> str | None:
    """R_BN matches BatchNorm statistics: nothing to match without BatchNorm layers."""
    reason = _images_only(setup)
    if reason:
        return reason
    from ..fl.bn_stats import batchnorm_layers
    from ..models import create_model

    return None if batchnorm_layers(create_model(setup.spec)) else "the model has no BatchNorm layer (R_BN needs one)"


def _multi_step_excluded(setup: Setup) -> str | None:
    """The FedAvg attack is for several local steps; one gradient (or one step) is IG's case."""
    reason = _images_only(setup)
    if reason:
        return reason
    p = setup.protocol
    if p.update_kind != "weight_delta" or (p.local_epochs == 1 and p.local_batch_size is None):
        return "simulates several local steps; the clients share one gradient (or take one step), IG's case"
    return None


def _records_only(setup: Setup) -> str | None:
    return None if setup.data_kind in RECORD_KINDS else "a health-record attack; the audited data are images"


# IG iteration = one double-backward pass; L-BFGS iterations make lbfgs_inner (20) of them.
PLANS.register("rgap")(Plan(kind="closed-form", weight=400.0, excluded=_rgap_excluded))
PLANS.register("idlg")(Plan(kind="optimisation", weight=20.0, excluded=_images_only, options=_iterative("idlg")))
PLANS.register("dlg")(Plan(kind="optimisation", weight=20.0, options=_iterative("dlg"),
                           excluded=_thorough_only("iDLG with jointly learnt labels: as costly, rarely stronger")))
PLANS.register("ig")(Plan(kind="optimisation", weight=1.0, excluded=_images_only, options=_iterative("ig")))
PLANS.register("ig-bn")(Plan(kind="optimisation", weight=1.0, excluded=_needs_batchnorm,
                             options=lambda s: _iterative("ig")(s)))  # IG's budget: the same search plus a prior
# the FedAvg attack: IG's iterations (the same simulated steps per iteration, plus the order swaps)
PLANS.register("fedavg")(Plan(kind="optimisation", weight=1.2, excluded=_multi_step_excluded,
                              options=_iterative("ig")))
PLANS.register("cinet")(Plan(kind="optimisation", weight=1.5, excluded=_images_only, options=_iterative("cinet")))
PLANS.register("giz")(Plan(kind="generative", weight=4.0, excluded=_needs_prior, options=_prior_options("giz")))
PLANS.register("gias")(Plan(kind="generative", weight=8.0, excluded=_needs_prior, options=_prior_options("gias")))
PLANS.register("giml")(Plan(kind="generative", weight=12.0, options=_iterative("giml"),
                            excluded=_thorough_only("learns its own generator during the attack (minutes)")))
PLANS.register("hgap")(Plan(kind="hybrid", weight=1.2, options=_iterative("hgap"),
                            excluded=lambda s: _rgap_excluded(s) or _thorough_only("R-GAP and IG again, "
                                                                                   "merged per sample")(s)))
PLANS.register("spear")(Plan(kind="closed-form", weight=50.0, excluded=_spear_excluded))
PLANS.register("imprint")(Plan(kind="closed-form", weight=1.0, excluded=lambda _s: (
    "needs a crafted model (malicious server): measured in the audit's malicious-server section, not on the "
    "honest model")))
def _tabular_options(setup: Setup) -> dict[str, Any]:
    """Recurrent victims get the ``sequence`` mode (L-BFGS: its steps cost up to 25 evaluations,
    so the budget's Adam steps / 25, one deterministic start); the rest the study's ``prior`` mode."""
    from ..attacks.tabular import recurrent

    options = _iterative("tabular")(setup)
    if not recurrent(setup.spec):
        return options
    steps = max(4, int(options.get("iterations", 2000)) // 25)
    return {"mode": "sequence", "iterations": steps}


PLANS.register("tabular")(Plan(kind="optimisation", weight=1.0, excluded=_records_only, options=_tabular_options))


def _tableak_options(setup: Setup) -> dict[str, Any]:
    """The budget's iterations per ensemble member (the attack's own default otherwise)."""
    return {k: v for k, v in _iterative("tableak")(setup).items() if k == "iterations"}


def _flat_records_only(setup: Setup) -> str | None:
    reason = _records_only(setup)
    if reason:
        return reason
    from ..attacks.tabular import recurrent

    return "relaxes flat table rows; a recurrent victim's time series go to tabular's sequence mode" \
        if recurrent(setup.spec) else None


# every member costs its iterations: weight = members (8) per iteration of the budget
PLANS.register("tableak")(Plan(kind="optimisation", weight=8.0, excluded=_flat_records_only, options=_tableak_options,
                               any_batch=True))


@dataclass(frozen=True)
class Entry:
    """One attack of the battery: its registry name, plan and options (or why it is skipped)."""

    name: str
    kind: str
    options: dict[str, Any]
    skipped: str | None  # reason, or None when the attack runs
    weight: float = 1.0
    any_batch: bool = False  # runs at every batch size (closed-form attacks always do)

    def iterations(self) -> int:
        cfg = ATTACKS.get(self.name).Config(**self.options)
        return int(getattr(cfg, "iterations", 1)) * int(getattr(cfg, "restarts", 1))

    def to_json(self) -> dict[str, Any]:
        return {"attack": self.name, "kind": self.kind, "options": self.options, "skipped": self.skipped}


def battery(setup: Setup, *, only: list[str] | None = None) -> list[Entry]:
    """Every registered attack with its plan; ``only`` restricts the run to those names."""
    if only is not None:
        for name in only:
            ATTACKS.get(name)  # unknown names list the valid ones
    entries = []
    for name in ATTACKS.names():
        if name not in PLANS:
            entries.append(Entry(name, "unknown", {}, "registered after the audit's plans were written: not planned"))
            continue
        plan = PLANS.get(name)
        reason = "not requested (--attacks)" if only is not None and name not in only else plan.excluded(setup)
        entries.append(Entry(name, plan.kind, {} if reason else plan.options(setup), reason, plan.weight,
                             plan.any_batch))
    if not any(e.skipped is None for e in entries):
        raise GradleakError("no attack of the battery applies to this setup: " +
                            "; ".join(f"{e.name}: {e.skipped}" for e in entries if only is None or e.name in only))
    return entries
