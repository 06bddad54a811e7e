"""How an audit scores, judges and reports each kind of data (images, health records).

The stages that simulate client rounds and run the battery are the same for every kind; what
differs is the score that says "leaked" (SSIM for images, feature accuracy against a blind
guess for records), the blind guess itself, the verdict's wording, the report's pictures, and
which later stages apply. One :class:`AuditKind` per kind keeps those choices in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..data.schema import RECORD_KINDS
from ..registry import Registry


@dataclass(frozen=True)
class AuditKind:
    metric: str  # the defender's worst case per batch size is the attack with the highest mean of this score
    also: tuple[str, ...]  # scores carried beside it in the worst case
    default_model: str  # victim when the user names none
    # blind guess (what "no leakage" scores) from (trials of the smallest batch, dataset); None when undefined
    baseline: Callable[[Sequence[Any], Any], float | None]
    verdict: Callable[..., dict[str, Any]]  # keyword arguments of gradleak.audit.verdict.verdict
    report: Callable[..., None]  # writes report.html and its pictures into a directory
    sweep_attack: str = "ig"  # the attack the defense sweep always runs (beside the attacker's pick)
    sweep_guess: tuple[str, ...] = ("rgap", "ig")  # the sweep's attacks assumed for the ETA before the battery ran
    # batch sizes probed when the user names none, per budget name (missing: the budget's own)
    batch_sizes: dict[str, tuple[int, ...]] | None = None


KINDS: Registry[AuditKind] = Registry("audit data kind")


def kind_of(data_kind: str) -> AuditKind:
    """The audit kind for a ``Dataset.kind`` ("image", "tabular", "timeseries")."""
    return KINDS.get("records" if data_kind in RECORD_KINDS else "image")


def _image_baseline(trials: Sequence[Any], data: Any) -> float | None:
    from .leakage import blind_guess_psnr, mean_std

    means = data.inputs.float().mean(dim=(0, 2, 3))
    return mean_std([blind_guess_psnr(t, means) for t in trials])[0]


def _image_verdict(**kwargs: Any) -> dict[str, Any]:
    from .verdict import verdict

    return verdict(**kwargs)


def _image_report(tmp: Any, **kwargs: Any) -> None:
    from .page import write_report

    kwargs.pop("confidence", None)  # no image attack states a confidence per pixel
    write_report(tmp, **kwargs)


def _record_verdict(**kwargs: Any) -> dict[str, Any]:
    from .records import record_verdict

    return record_verdict(**kwargs)


def _record_report(tmp: Any, **kwargs: Any) -> None:
    from .records_page import write_record_report

    write_record_report(tmp, **kwargs)


KINDS.register("image", description="images: SSIM against the private image, PSNR beside a blind guess")(AuditKind(
    metric="ssim", also=("psnr",), default_model="lenet", baseline=_image_baseline, verdict=_image_verdict,
    report=_image_report))
KINDS.register("records", description="health records: feature accuracy against a blind guess")(AuditKind(
    metric="feature_accuracy", also=("baseline_feature_accuracy", "similarity", "confidence_q4_accuracy"),
    default_model="mlp", baseline=lambda _trials, _data: None, verdict=_record_verdict, report=_record_report,
    sweep_attack="tableak", sweep_guess=("spear", "tableak"),
    batch_sizes={"quick": (1, 8), "standard": (1, 8, 32, 64), "thorough": (1, 8, 16, 32, 64, 128)}))
