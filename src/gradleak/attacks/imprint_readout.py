"""The imprint read-out in closed form, and the attacker's own single-sample check per bin.

Rows ``0..bins-1`` of the imprint layer have increasing thresholds; a sample whose statistic
lies in ``[q_i, q_{i+1})`` fires rows ``0..i``. Every row's pre-activation gradient for sample
``n`` is the same number ``g_n`` (:mod:`gradleak.models.imprint`), so

    dW_i - dW_{i+1} = sum_{n in bin i} g_n x_n,      db_i - db_{i+1} = sum_{n in bin i} g_n

and their ratio is the sample itself when bin ``i`` holds exactly one (the last bin reads
``dW / db`` directly). A bin holding several samples gives a ``g``-weighted mixture, which is
not a recovery. The attacker cannot compare with the truth, so every non-empty bin is checked
with what it can compute (:func:`check_bins`):

1. range: the read-out lies in the data range (a mixture with weights of both signs does not);
2. bin: the read-out's own statistic falls in the bin's interval (it must, for one sample);
3. count: the bin's bias difference equals what the read-out alone would produce through the
   model, ``factor * g(x, y)`` for some label ``y`` (``factor`` from the protocol: ``1/N`` for
   one gradient of a mean loss). The ratio estimates how many samples share the bin; a
   mixture of two similar samples reads about 2.

A bin passing all three is reported as a single sample ("certified"); the others are reported
as collisions and never counted as recoveries by the attack.
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models.imprint import ImprintModel
from ..observation import Observation


@dataclass
class BinReading:
    """One non-empty bin: its read-out and the attacker's verdict on it."""

    bin: int  # row index (bins ordered by increasing threshold)
    image: torch.Tensor  # read-out, flattened (float64)
    weight: float  # bias-gradient difference: the sum of g over the bin's samples
    in_range: bool = False  # check 1
    in_bin: bool = False  # check 2
    count: float = float("nan")  # check 3: estimated samples in the bin (best label)
    label: int = 0  # label whose predicted weight matches best
    single: bool = False  # passed every check: believed to hold exactly one sample


def read_bins(weight_grad: torch.Tensor, bias_grad: torch.Tensor, *, empty_tol: float = 1e-7) -> list[BinReading]:
    """Neighbour differences of the imprint layer's update; bins whose bias difference is below
    ``empty_tol`` x the largest bias update are empty (rounding only)."""
    dw, db = weight_grad.detach().double().flatten(1), bias_grad.detach().double().flatten()
    diff_w, diff_b = dw.clone(), db.clone()
    diff_w[:-1] -= dw[1:]
    diff_b[:-1] -= db[1:]
    scale = float(db.abs().max())
    if scale == 0.0:
        return []
    full = torch.nonzero(diff_b.abs() > empty_tol * scale).flatten().tolist()
    return [BinReading(bin=i, image=diff_w[i] / diff_b[i], weight=float(diff_b[i])) for i in full]


def sample_factors(observation: Observation) -> list[float]:
    """How one sample's own bias gradient ``g`` enters the shared update (candidates, signed).

    fedsgd: ``1/N`` (mean loss; secure aggregation's mean over k clients of B keeps it 1/N).
    fedavg: ``-lr * e / (b * k)`` for a local mini-batch of ``b`` (the last one may be smaller),
    k aggregated clients and ``e`` the epochs in which the sample still fired its rows: all of
    them while the model barely moves, only the first when a local step rewrites the imprint rows
    (their update dwarfs their small weights), so every ``e`` from 1 to the epochs is a candidate.
    """
    protocol, n = observation.protocol, observation.num_samples
    if protocol.update_kind == "gradient":
        return [1.0 / n]
    clients = 1
    if observation.defense and observation.defense.get("name") == "secagg":
        clients = int(observation.defense["value"])
    per_client = max(n // clients, 1)
    size = min(protocol.local_batch_size or per_client, per_client)
    sizes = {size, per_client % size or size}
    return [-protocol.lr * e / (b * clients) for b in sorted(sizes) for e in range(1, protocol.local_epochs + 1)]


def own_weights(model: ImprintModel, images: torch.Tensor, *, num_classes: int) -> torch.Tensor:
    """``g(x, y)`` for every read-out and label (K x classes): the bias gradient of one imprint
    row that the read-out alone, labelled ``y``, produces (sum loss, no batch mean)."""
    with torch.no_grad():
        logits = model(images)
    if logits.shape[-1] == 1:  # single-logit logistic models: dL/dlogit = sigmoid - y
        p = torch.sigmoid(logits[:, 0])
        slope = torch.stack([p, p - 1], dim=1)
    else:  # cross-entropy: dL/dlogit_0 = p_0 - [y = 0]
        p = torch.softmax(logits.double(), dim=1)[:, 0]
        slope = p[:, None] - F.one_hot(torch.zeros(1, dtype=torch.long), num_classes).double()
    bins = model.imprint.out_features
    return (model.offset_scale / (bins * model.temperature) * slope).double()


RECORD_RANGE_SLACK = 0.5  # records: clients' values may leave the attacker's own column range by half of it


def value_range(observation: Observation, *, range_tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower, upper) bounds a genuine sample stays within, per input entry (flattened) or as scalars.

    Images: the data's range, widened by ``range_tol`` of it (rounding). Health records have no
    common range (standardised columns, 0/1 flags): each column's range on the attacker's own
    records, widened by :data:`RECORD_RANGE_SLACK` of it, since the clients' records are others."""
    from ..data.schema import RECORD_KINDS

    prior = observation.data.get("prior") or {}
    if observation.data.get("kind") in RECORD_KINDS and "min" in prior and "max" in prior:
        lo = torch.as_tensor(prior["min"], dtype=torch.float64)
        hi = torch.as_tensor(prior["max"], dtype=torch.float64)
        repeat = math.prod(observation.input_shape) // lo.numel()  # time series: the columns at every step
        slack = RECORD_RANGE_SLACK * (hi - lo) + range_tol
        return (lo - slack).repeat(repeat), (hi + slack).repeat(repeat)
    lo, hi = float(observation.data.get("min", 0.0)), float(observation.data.get("max", 1.0))
    margin = range_tol * (hi - lo)
    return torch.tensor(lo - margin, dtype=torch.float64), torch.tensor(hi + margin, dtype=torch.float64)


def check_bins(readings: list[BinReading], observation: Observation, model: ImprintModel, *,
               range_tol: float, count_tol: float) -> None:
    """Fill in each reading's checks (in place); the model is the crafted one the server sent."""
    if not readings:
        return
    lo, hi = value_range(observation, range_tol=range_tol)
    weight = model.imprint.weight.detach().double()
    bias = model.imprint.bias.detach().double()
    gaps = (bias[:-1] - bias[1:]).abs()
    images = torch.stack([r.image for r in readings])
    z = images @ weight.T + bias  # pre-activations of every row for every read-out
    dtype = next(model.parameters()).dtype
    own = own_weights(model, images.to(dtype).reshape(-1, *observation.input_shape),
                      num_classes=max(observation.model.num_classes, 2))
    factors = sample_factors(observation)
    for j, r in enumerate(readings):
        r.in_range = bool(((images[j] >= lo) & (images[j] <= hi)).all())
        i = r.bin
        below = z[j, i] >= -0.5 * float(gaps[i - 1] if i > 0 else gaps[0])
        above = i + 1 >= len(bias) or z[j, i + 1] <= 0.5 * float(gaps[i])
        r.in_bin = bool(below and above)
        counts = torch.stack([r.weight / (f * own[j]) for f in factors])  # factors x classes
        counts = torch.where(torch.isfinite(counts), counts, torch.full_like(counts, float("inf")))
        best = int(torch.argmin((counts - 1).abs()))
        r.count, r.label = float(counts.flatten()[best]), best % own.shape[1]
        r.single = r.in_range and r.in_bin and abs(r.count - 1) <= count_tol
    _drop_repeats(readings, tol=range_tol * (hi - lo))


def _drop_repeats(readings: list[BinReading], *, tol: torch.Tensor) -> None:
    """A sample read out at two boundaries (rows that are not nested, e.g. perturbed) is one recovery
    (``tol``: per entry, or one for all)."""
    kept: list[torch.Tensor] = []
    for r in readings:
        if not r.single:
            continue
        if any(bool(((r.image - k).abs() <= tol).all()) for k in kept):
            r.single = False
        else:
            kept.append(r.image)
