"""Reconstruction robustness (ReRo) bound of a Gaussian-DP release, and the measured success it bounds.

Why: an attack that fails says little about the next, stronger attack; for DP-SGD and Gaussian
update noise the mechanism itself bounds *every* attacker. In the hypothesis-testing (f-DP)
view, a mu-GDP mechanism lets an informed adversary (it knows everything but the target)
succeed with probability at most ``Phi(Phi^-1(kappa) + mu)``, where kappa is the success
probability without seeing the release (Kaissis et al. 2023; Hayes, Mahloujifar, Balle,
NeurIPS 2023, whose numerical bound can be tighter; this is their closed Gaussian form).

Success criterion, made the same on both sides (so measured <= bound is a real check):
the target is one of ``n`` candidates drawn from the same distribution (the truth plus n - 1
other samples the evaluator holds, so the truth is a uniformly random member); the attack
succeeds when its reconstruction is strictly closer (MSE) to the truth than to every other
candidate. Without the release, no guess beats ``kappa = 1/n``.

mu of the attacked release (one shared update):

* ``dpsgd:sigma``: Opacus clips each per-sample gradient to C and adds N(0, (sigma C)^2) to the
  sum. Two candidates for the target move the sum by up to 2C (replace-one adjacency: the
  candidates replace each other; an add/remove accountant's 1/sigma would understate it), so
  mu = 2 / sigma per step that contains the target, composed over T such steps:
  mu = sqrt(T) * 2 / sigma (fedsgd: T = 1; fedavg: T = local epochs). Exact, no approximation.
* ``noise:s`` (no clipping): the sensitivity is not bounded by the mechanism; over the
  evaluator's candidate set it is the largest distance between the clean updates the candidates
  would give, so mu = max_ij ||u_i - u_j|| / s, a bound for this candidate game only.
* Poisson-subsampled training (rate q, T steps): :func:`subsampled_mu` is the CLT
  *approximation* q sqrt(T (e^{mu^2} - 1)) of Dong, Roth and Su, for information only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Sequence

import torch

from ..errors import GradleakError

_NORMAL = NormalDist()
ALPHA = 1e-3  # a measured success above the bound is a violation when this unlikely under the bound
CANDIDATES = 10  # candidates of the identification game (kappa = 1/10)


def rero_bound(*, kappa: float, mu: float) -> float:
    """Upper bound ``Phi(Phi^-1(kappa) + mu)`` on an informed adversary's success against a mu-GDP release."""
    if not 0.0 < kappa <= 1.0:
        raise GradleakError(f"baseline success kappa must be in (0, 1], got {kappa}")
    if not mu >= 0.0:
        raise GradleakError(f"mu must be >= 0, got {mu}")
    if kappa == 1.0 or math.isinf(mu):
        return 1.0
    return _NORMAL.cdf(_NORMAL.inv_cdf(kappa) + mu)


def gaussian_mu(*, sensitivity: float, sigma: float) -> float:
    """mu of the Gaussian mechanism: sensitivity / noise std (inf without noise)."""
    if sensitivity < 0 or sigma < 0:
        raise GradleakError(f"sensitivity and sigma must be >= 0, got {sensitivity}, {sigma}")
    if sensitivity == 0:
        return 0.0
    return math.inf if sigma == 0 else sensitivity / sigma


def compose_mu(mu: float, *, steps: int) -> float:
    """``steps`` adaptive compositions of a mu-GDP mechanism: sqrt(steps) * mu (exact)."""
    return math.sqrt(steps) * mu


def subsampled_mu(mu: float, *, sample_rate: float, steps: int) -> float:
    """Poisson subsampling at ``sample_rate`` over ``steps``: the CLT approximation
    q sqrt(T (e^{mu^2} - 1)) (exact composition when q = 1). An approximation, not a bound."""
    if sample_rate >= 1.0:
        return compose_mu(mu, steps=steps)
    if math.isinf(mu) or mu * mu > 700:
        return math.inf
    return sample_rate * math.sqrt(steps * math.expm1(mu * mu))


def dpsgd_release_mu(*, noise_multiplier: float, steps: int = 1) -> float:
    """mu of a DP-SGD release w.r.t. replacing the target: sqrt(steps) * 2 / sigma."""
    return compose_mu(gaussian_mu(sensitivity=2.0, sigma=noise_multiplier), steps=steps)


def identified(reconstruction: torch.Tensor, truth: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Per sample: is ``reconstruction[i]`` strictly closer (MSE) to ``truth[i]`` than to every
    ``others[i, j]``? Shapes (B, ...), (B, ...), (B, n - 1, ...)."""
    r = reconstruction.reshape(len(reconstruction), 1, -1).double()
    own = (r[:, 0] - truth.reshape(len(truth), -1).double()).pow(2).mean(-1)
    rest = (r - others.reshape(others.shape[0], others.shape[1], -1).double()).pow(2).mean(-1)
    return own < rest.min(dim=1).values


def binomial_tail(successes: int, trials: int, p: float) -> float:
    """P[X >= successes] for X ~ Binomial(trials, p)."""
    return min(1.0, sum(math.comb(trials, k) * p ** k * (1 - p) ** (trials - k) for k in range(successes, trials + 1)))


@dataclass(frozen=True)
class ReRoCheck:
    """Measured identification success beside the bound for the same game."""

    successes: int
    trials: int
    kappa: float
    mu: float | None  # None: the defense gives no Gaussian-DP guarantee
    method: str  # how mu was obtained

    @property
    def success(self) -> float:
        return self.successes / self.trials if self.trials else float("nan")

    @property
    def bound(self) -> float | None:
        return None if self.mu is None else rero_bound(kappa=self.kappa, mu=self.mu)

    @property
    def p_value(self) -> float | None:
        """How likely so many successes are if the true success rate were the bound."""
        return None if self.bound is None else binomial_tail(self.successes, self.trials, self.bound)

    @property
    def violated(self) -> bool:
        """Measured success significantly above the bound: a bug in the DP mechanism or its accounting."""
        return self.p_value is not None and self.success > self.bound and self.p_value < ALPHA

    def record(self) -> dict[str, Any]:
        """Flat row keys."""
        finite = self.mu is not None and math.isfinite(self.mu)
        return {"rero_success": self.success, "rero_trials": self.trials, "rero_kappa": self.kappa,
                "rero_mu": self.mu if finite else None, "rero_mu_method": self.method, "rero_bound": self.bound,
                "rero_p_value": self.p_value, "rero_violation": self.violated}


def violations(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per row whose measured success breaks its bound."""
    return [f"{r['defense']}: measured reconstruction success {r['rero_success']:.3f} over {r['rero_trials']} trials "
            f"is above the DP bound {r['rero_bound']:.3f} (mu={r['rero_mu']}, p={r['rero_p_value']:.2g}): the DP "
            f"mechanism or its accounting is wrong" for r in rows if r.get("rero_violation")]
