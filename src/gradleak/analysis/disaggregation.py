"""When can a batch be split exactly through a linear+ReLU layer? (architecture only, no data)

The condition for SPEAR-style disaggregation (:mod:`gradleak.attacks.spear`), from the layer's
width ``m`` (units) and input size ``n`` alone, under the usual model of a random ReLU layer
(each unit active for each sample independently with probability 1/2):

* **rank**: ``dL/dW`` is a sum of ``b`` rank-one terms in an ``m x n`` matrix, so samples are
  separable only while ``b <= min(m, n)``; above it no attack on this layer recovers the batch.
* **sampling** (SPEAR, Dimitrov et al. 2024, Lemma 5.2): a random ``(b-1)``-row sub-matrix
  yields sample ``j``'s direction when all its rows are units ``j`` leaves inactive,
  probability ``~2^-(b-1)``, so finding all ``b`` takes about ``2^(b-1) H_b`` draws (coupon
  collector). Expected to finish while that stays within the draw budget.
* **peeling**: a unit active for exactly one sample gives that sample as a gradient ratio;
  the batch has about ``m b 2^-b`` of them, and each peeled sample creates more. Expected to
  start while at least one is expected: ``m b 2^-b >= 1``.
* **enough inactive units**: each sample's inactive units must span a hyperplane of the
  ``b``-dimensional factor space, ``Binomial(m, 1/2) >= b - 1``, for every sample.

Real data beat the independence model: images (non-negative pixels, shared brightness) give
correlated activation patterns, which multiply single-sample units, so the measured limit is
usually higher (benchmarks/spear_table.py puts prediction and measurement side by side).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

SAMPLING_BUDGET = 32_768  # sub-matrices per sampling round: the spear attack's default ``trials``
MAX_BATCH = 4096  # limits are searched up to this batch size


def expected_draws(batch: int) -> float:
    """Expected SPEAR sub-matrices until every sample's direction was drawn once."""
    if batch <= 1:
        return 1.0
    harmonic = sum(1.0 / k for k in range(1, batch + 1))
    return 2.0 ** (batch - 1) * harmonic


def expected_single_units(width: int, batch: int) -> float:
    """Expected units active for exactly one sample of the batch."""
    return width * batch * 2.0 ** (-batch)


def spanning_probability(width: int, batch: int) -> float:
    """Probability that every sample leaves at least ``b - 1`` of the ``m`` units inactive."""
    if batch <= 1:
        return 1.0
    from scipy.stats import binom  # lazy: keeps scipy.stats out of CLI start-up

    per_sample = float(binom.sf(batch - 2, width, 0.5))  # P(Bin(m, 1/2) >= b - 1)
    return per_sample**batch


@dataclass(frozen=True)
class DisaggregationReport:
    layer: str  # module name of the linear+ReLU layer
    width: int  # units m
    input_size: int  # n
    depth: int  # 0: the layer reads the data itself
    rank_limit: int  # no batch above min(m, n) is separable
    sampling_limit: int  # largest b with expected SPEAR draws <= budget
    peeling_limit: int  # largest b with >= 1 expected single-sample unit
    spanning_limit: int  # largest b whose inactive units span for every sample with prob >= 0.99
    budget: float

    @property
    def expected_limit(self) -> int:
        """Largest batch size expected to be recovered exactly (independent-activation model)."""
        return min(self.rank_limit, self.spanning_limit, max(self.sampling_limit, self.peeling_limit))

    def verdict(self) -> str:
        what = "the client's data" if self.depth == 0 else "the features entering it (not the data)"
        return (f"{self.layer} ({self.width} units): exact disaggregation of {what} expected up to batch "
                f"{self.expected_limit} (sampling {self.sampling_limit}, peeling {self.peeling_limit}; "
                f"impossible above {self.rank_limit})")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "expected_limit": self.expected_limit, "verdict": self.verdict()}


def _largest(predicate: Any, upper: int) -> int:
    best = 0
    for b in range(1, upper + 1):
        if predicate(b):
            best = b
        elif b > 8:  # the predicates are monotone past small b
            break
    return best


def disaggregation_analysis(model: nn.Module, *, input_shape: tuple[int, ...],
                            budget: float = SAMPLING_BUDGET) -> DisaggregationReport | None:
    """The condition for the model's shallowest linear+ReLU layer, or None if it has none."""
    from ..attacks.spear.layer import linear_relu_layers  # late: attacks import analysis modules

    layers = linear_relu_layers(model, input_shape)
    if not layers:
        return None
    target = layers[0]
    linear = dict(model.named_modules())[target.name]
    m, n = int(linear.out_features), int(linear.in_features)
    upper = min(MAX_BATCH, m, n)
    return DisaggregationReport(
        layer=target.name, width=m, input_size=n, depth=target.depth, rank_limit=min(m, n),
        sampling_limit=_largest(lambda b: expected_draws(b) <= budget, upper),
        peeling_limit=_largest(lambda b: expected_single_units(m, b) >= 1.0, upper),
        spanning_limit=_largest(lambda b: spanning_probability(m, b) >= 0.99, upper),
        budget=budget,
    )
